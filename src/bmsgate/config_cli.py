"""``bmsgate config``: headless provisioning, like the dongle's AT console but validated.

``get KEY``, ``set KEY VALUE``, ``check``, ``export [--show-secrets]`` and ``import FILE`` work on
the YAML file (``--config``, else $BMSGATE_CONFIG, else ./bmsgate.yaml) with the same rules as
the services: a bad key or value is one line naming it and exit code 2, and nothing is written.
Keys are dotted paths; list items by index: ``buses.0.packs.1.name``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bmsgate_common.config_view import MASK as MASK  # re-exported for setup_wizard
from bmsgate_common.config_view import plain as plain
from bmsgate_common.settings import CONFIG_ENV, ConfigError, Settings, explain, load_settings

DEFAULT_FILE = "bmsgate.yaml"
USER_ERROR = 2


class KeyProblem(Exception):
    """A key that does not exist or cannot be set; the message names it."""


def config_path(arg: str | None) -> Path:
    """The file the command works on."""
    return Path(arg or os.environ.get(CONFIG_ENV) or DEFAULT_FILE)


def lookup(data: Any, key: str) -> Any:
    """The value at a dotted key; KeyProblem names the part that does not exist."""
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyProblem(f"no key '{key}' (no '{part}' there)")
    return node


def assign(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of raw file data with ``key`` set; a list index may append one item."""
    root: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    node: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) > len(node):
                raise KeyProblem(f"'{'.'.join(parts[: i + 1])}': no item {part} in that list")
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
            raise KeyProblem(f"'{'.'.join(parts[:i])}' is a value, not a section")
    return root


def read_raw(path: Path) -> dict[str, Any]:
    """What the file says (empty when it does not exist yet)."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return data


def validate(raw: dict[str, Any], path: Path) -> Settings:
    """The settings the data would give; ConfigError in one line when they are invalid."""
    masked = [k for k, v in _leaves(raw) if v == MASK]
    if masked:
        raise ConfigError(f"'{masked[0]}' holds a masked secret ({MASK}); give the real value")
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"config error in {path}: {explain(err)}") from None


def _leaves(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), data)]


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write the file readable by its owner only (it may hold secrets), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    """Carry out one ``bmsgate config`` action; errors are one line and exit 2."""
    path = config_path(args.config)
    out = sys.stdout
    try:
        if args.action == "check":
            cfg = load_settings(path if path.exists() else None)
            packs = sum(len(b.packs) for b in cfg.buses)
            out.write(f"{path}: valid ({len(cfg.buses)} bus(es), {packs} pack(s))\n")
        elif args.action == "get":
            cfg = load_settings(path if path.exists() else None)
            value = lookup(plain(cfg, secrets=args.show_secrets), args.key)
            text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
            out.write(text.removesuffix("...\n").rstrip("\n") + "\n")
        elif args.action == "set":
            new = assign(read_raw(path), args.key, yaml.safe_load(args.value))
            validate(new, path)
            write_private(path, new)
            out.write(f"{args.key} set in {path}\n")
        elif args.action == "export":
            cfg = validate(read_raw(path), path)
            data = plain(cfg, secrets=args.show_secrets)
            out.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        elif args.action == "import":
            new = read_raw(Path(args.file))
            validate(new, Path(args.file))
            write_private(path, new)
            out.write(f"{args.file} imported into {path}\n")
    except (ConfigError, KeyProblem) as err:
        sys.stderr.write(f"bmsgate config: {err}\n")
        return USER_ERROR
    except (yaml.YAMLError, OSError) as err:
        sys.stderr.write(f"bmsgate config: {type(err).__name__}: {err}".splitlines()[0] + "\n")
        return USER_ERROR
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``bmsgate config``."""
    parser.add_argument("--config", help=f"YAML file (default: ${CONFIG_ENV} or ./{DEFAULT_FILE})")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("check", help="validate the file (and BMSGATE_* variables)")
    get = actions.add_parser("get", help="print one value (secrets masked)")
    get.add_argument("key")
    get.add_argument("--show-secrets", action="store_true")
    put = actions.add_parser("set", help="set one value, validated before it is written")
    put.add_argument("key")
    put.add_argument("value", help="YAML: 5, true, text, [1, 2], {id: a}")
    export = actions.add_parser("export", help="the whole configuration (secrets masked)")
    export.add_argument("--show-secrets", action="store_true")
    imp = actions.add_parser("import", help="replace the file with a validated one")
    imp.add_argument("file")
