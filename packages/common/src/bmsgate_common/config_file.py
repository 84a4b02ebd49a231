"""The configuration file as its owner edits it: read, change, validate, write, show masked.

One place for ``bmsgate config``, ``bmsgate setup`` and the web UI's settings and setup pages.
The raw YAML data is what gets changed and written (defaults stay implicit, comments are not
kept); before anything is written the whole file is validated with the services' own Settings
model, so a bad key or value is one line naming it and the file is left as it was. The file may
hold secrets: it is written mode 0600 and replaced atomically. Shown to people, every secret is
masked (MASK); a masked value that comes back from a form is replaced by the stored one.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from .config_migrate import migrate_config
from .config_view import MASK, plain
from .durable import write_durably
from .settings import CONFIG_ENV, ConfigError, Settings, _merge, _read_yaml, explain, one_line
from .settings import parse_yaml as parse_yaml  # YAML text (an upload, the editor) as raw data

DEFAULT_FILE = "bmsgate.yaml"
_USERINFO = re.compile(r"(?P<scheme>\w[\w+.-]*://)[^/@\s]*@")  # user:password@ in any URL


class KeyProblem(ConfigError):
    """A key that does not exist or cannot be set; the message names it."""


def config_path(arg: str | Path | None = None) -> Path:
    """The file to work on: ``arg``, else $BMSGATE_CONFIG, else ./bmsgate.yaml."""
    return Path(arg or os.environ.get(CONFIG_ENV) or DEFAULT_FILE)


def read_raw(path: Path, *, missing_ok: bool = True) -> dict[str, Any]:
    """What the file says in the current format (empty when it does not exist yet).

    ConfigError if it is not YAML or of a newer format; an older file's keys come migrated, so
    what is written back is in the current format (config_migrate.py).
    """
    if missing_ok and not path.exists():
        return {}
    return migrate_config(_read_yaml(path))[0]


def read_stored(path: Path) -> dict[str, Any]:
    """What the file says, as written (no migration); ConfigError if it is not YAML."""
    return _read_yaml(path)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: nested mappings merged, lists and values replaced."""
    return _merge(base, over)


def leaves(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key, value) of nested data."""
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in leaves(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in leaves(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), data)]


def validate(raw: dict[str, Any], source: str | Path) -> Settings:
    """The settings the data would give; ConfigError in one line when they are invalid."""
    masked = [k for k, v in leaves(raw) if isinstance(v, str) and MASK in v]
    if masked:
        raise ConfigError(
            f"'{one_line(masked[0])}' holds a masked secret ({MASK}); give the real value"
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"config error in {source}: {explain(err)}") from None


def lookup(data: Any, key: str) -> Any:
    """The value at a dotted key; KeyProblem names the part that does not exist."""
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyProblem(f"no key '{one_line(key)}' (no '{one_line(part)}' there)")
    return node


def assign(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of raw file data with ``key`` set; a list index may append one item."""
    root: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    node: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = one_line(".".join(parts[: i + 1]))
        if isinstance(node, list):
            if not part.isdigit() or int(part) > len(node):
                raise KeyProblem(f"'{where}': no item {one_line(part)} in that list")
            index = int(part)
            if index == len(node):
                node.append(value if last else {})
            elif last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if parts[i + 1].isdigit() else {})
        else:
            raise KeyProblem(f"'{one_line('.'.join(parts[:i]))}' is a value, not a section")
    return root


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write the file readable by its owner only (it may hold secrets), durably (durable.py)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    write_durably(path, text.encode("utf-8"))


def save(path: Path, raw: dict[str, Any]) -> Settings:
    """Validate ``raw`` and write it to ``path``; nothing is written when it is invalid.

    Data in an older format (an old backup restored) is written migrated.
    """
    raw = migrate_config(raw)[0]
    cfg = validate(raw, path)
    write_private(path, raw)
    return cfg


def mask_urls(value: Any) -> Any:
    """Credentials in any URL masked (``mqtt://user:pw@host`` -> ``mqtt://********@host``)."""
    if isinstance(value, dict):
        return {k: mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_urls(v) for v in value]
    if isinstance(value, str):
        return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
    return value


def effective_view(cfg: Settings) -> dict[str, Any]:
    """The effective settings (file, environment, defaults) for people: every secret masked."""
    data: dict[str, Any] = mask_urls(plain(cfg, secrets=False))
    return data


def revealed(cfg: Settings) -> dict[str, Any]:
    """The settings as YAML-ready data with every secret in clear: for a private (0600) file."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [reveal(v) for v in value]
        return value

    data: dict[str, Any] = to_jsonable_python(reveal(cfg.model_dump(exclude_none=True)))
    return data


def secret_keys(raw: dict[str, Any]) -> set[str]:
    """The dotted keys of ``raw`` that hold a secret (SecretStr fields), found by the model."""
    try:
        cfg = Settings.model_validate(raw)
    except ValidationError:
        # an invalid file is shown to be mended: its secrets by where the model keeps them
        return {k for k, _ in leaves(raw) if _secret_place(k.split("."))}
    hidden = dict(leaves(plain(cfg, secrets=False)))
    return {k for k, v in leaves(plain(cfg, secrets=True)) if hidden.get(k) != v}


def _secret_place(key: list[str]) -> bool:
    return any(
        len(key) == len(place) and all(p in ("*", k) for p, k in zip(place, key, strict=True))
        for place in _secret_places()
    )


@cache
def _secret_places() -> list[tuple[str, ...]]:
    """Where the model keeps secrets, as key parts; "*" is any entry of a list or mapping."""
    schema = Settings.model_json_schema()
    defs = schema.get("$defs", {})
    out: list[tuple[str, ...]] = []

    def walk(node: dict[str, Any], at: tuple[str, ...], seen: frozenset[str]) -> None:
        ref = node.get("$ref", "").rsplit("/", 1)[-1]
        if ref:
            if ref in seen:
                return
            node, seen = {**defs[ref], **node}, seen | {ref}
        if node.get("writeOnly"):
            out.append(at)
            return
        for option in node.get("anyOf", []):
            walk(option, at, seen)
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*at, "*"), seen)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*at, "*"), seen)
        for key, sub in node.get("properties", {}).items():
            walk(sub, (*at, key), seen)

    walk(schema, (), frozenset())
    return out


def masked(raw: dict[str, Any]) -> dict[str, Any]:
    """The file's own data for people: secrets and URL credentials masked."""
    secret = secret_keys(raw)

    def walk(value: Any, prefix: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{prefix}{k}.") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{prefix}{i}.") for i, v in enumerate(value)]
        return MASK if prefix.rstrip(".") in secret and value is not None else mask_urls(value)

    data: dict[str, Any] = walk(raw, "")
    return data


def keep_secrets(
    new: Any, stored: Any, origins: dict[str, list[int | None]] | None = None, at: str = ""
) -> Any:
    """``new`` with every masked value replaced by the stored one of the same entry.

    A form shows secrets masked; sending the form back unchanged must keep them. A masked
    value with nothing stored for it stays masked, and validate() then names it. Entries of a
    list are paired by ``origins`` (dotted key of a list -> each entry's index in the stored
    list, None for a new one: what the forms send after a remove or a move), else by their
    name or id, else by place when the list kept its length: a target's password never moves to
    another target.
    """
    if isinstance(new, dict):
        old = stored if isinstance(stored, dict) else {}
        return {
            k: keep_secrets(v, old.get(k), origins, f"{at}.{k}" if at else str(k))
            for k, v in new.items()
        }
    if isinstance(new, list):
        old_list = stored if isinstance(stored, list) else []
        pairs = _pairs(new, old_list, (origins or {}).get(at))
        return [
            keep_secrets(v, old_list[j] if j is not None else None, origins, f"{at}.{i}")
            for i, (v, j) in enumerate(zip(new, pairs, strict=True))
        ]
    masked_here = new == MASK or (isinstance(new, str) and MASK in new and mask_urls(stored) == new)
    if stored is not None and masked_here:
        return stored
    return new


def _identity(entry: Any) -> tuple[str, Any] | None:
    for key in ("name", "id"):
        if isinstance(entry, dict) and isinstance(entry.get(key), str):
            return key, entry[key]
    return None


def _pairs(new: list[Any], old: list[Any], origin: list[int | None] | None) -> list[int | None]:
    """For each entry of ``new``, the index of its stored entry in ``old`` (None: a new one)."""
    if origin is not None:
        if len(origin) != len(new):
            return [None] * len(new)  # not this list's: nothing is paired
        return [j if j is not None and 0 <= j < len(old) else None for j in origin]
    known = {_identity(e): j for j, e in enumerate(old) if _identity(e) is not None}
    out: list[int | None] = [known.get(_identity(e)) if _identity(e) else None for e in new]
    taken = set(out)
    for i, j in enumerate(out):
        if j is None and len(new) == len(old) and i not in taken:
            out[i] = i  # renamed in place
    return out
