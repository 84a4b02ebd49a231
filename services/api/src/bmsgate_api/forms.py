"""The Settings page's forms: the services' own Settings model as form fields, grouped for people.

The JSON Schema pydantic makes of ``Settings`` is flattened here into one node per field (its
label, help text, unit, range, choices, whether it is a secret), so the page renders forms
without knowing the model. A field's unit is the ``[unit]`` its description starts with (the
model's convention). A validation error becomes one message per field, in words, at the key the
page shows it beside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any, Final, NamedTuple

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bmsgate_common.invalid import in_words
from bmsgate_common.settings import Settings


class Part(NamedTuple):
    """One form of a group: the dotted key it edits (``*``: every item of a list)."""

    key: str
    title: str
    omit: tuple[str, ...] = ()  # fields of it shown by another form


class Group(NamedTuple):
    """A tab of the Settings page."""

    id: str
    title: str
    parts: tuple[Part, ...]


# how a battery owner thinks of the configuration; every top-level section is in one group
GROUPS: Final = (
    Group(
        "batteries",
        "Batteries and buses",
        (
            Part("buses", "Serial buses and their packs"),
            Part("banks", "Banks (packs in parallel)"),
            Part("stale_after", "When a pack shows offline"),
        ),
    ),
    Group(
        "outputs",
        "Outputs",
        (
            Part("publisher.targets", "MQTT targets", omit=("homeassistant", "openhasp")),
            Part("publisher.targets.*.homeassistant", "Home Assistant"),
            Part("modbus", "Modbus", omit=("display",)),
            Part("history.influx", "InfluxDB"),
            Part("modbus.display", "Displays: colour displays over Modbus"),
            Part("publisher.targets.*.openhasp", "Displays: openHASP plates"),
        ),
    ),
    Group("notifications", "Notifications", (Part("notifier", "Notifications"),)),
    Group(
        "control",
        "Control and remote access",
        (
            Part("control", "Control"),
            Part("tunnel", "Tunnel for the vendors' PC software"),
            Part("api", "Web UI and API", omit=("viewers",)),
            Part("api.viewers", "Viewers: read-only accounts"),
        ),
    ),
    Group(
        "history",
        "History",
        (
            Part("history.archive", "Archive"),
            Part("history.health", "Battery health rules"),
            Part("history.max_gap", "Gaps"),
        ),
    ),
    Group(
        "system",
        "System",
        (
            Part("mqtt", "Backbone broker (MQTT)"),
            Part("timezone", "Time zone"),
            Part("log_level", "Log level"),
            Part("data_dir", "Data folder"),
        ),
    ),
)

_UNIT = re.compile(r"^\[([^\]]+)\]\s*")
# words pydantic's titles spell as plain words
_WORDS: Final = {
    "Id": "ID",
    "Soc": "SOC",
    "Tls": "TLS",
    "Url": "URL",
    "Ca": "CA",
    "Qos": "QoS",
    "Mdns": "mDNS",
    "Mos": "MOS",
    "Api": "API",
    "Mv": "[mV]",
    "Openhasp": "openHASP",
}


# pointers into the code or the docs, left out of the help an owner reads beside a field
_DOC_PATH = re.compile(r",\s*docs/[\w./-]+\.md")
_CODE_NOTE = re.compile(r"\s*\([^()]*(?:docs/|bmsgate_|python -m)[^()]*\)")


def owner_words(description: str) -> str:
    """A description without its references to modules and docs files."""
    return _CODE_NOTE.sub("", _DOC_PATH.sub("", description)).strip()


def key_words(name: str) -> str:
    """A key in words: poll_interval is "Poll interval", url is "URL"."""
    words = [_WORDS.get(w.capitalize(), w) for w in name.split("_")]
    text = " ".join(words)
    if words and words[0] in _WORDS.values():  # spelt as it is: "mDNS", "openHASP"
        return text
    return text[:1].upper() + text[1:]


def _option_words(options: list[Any]) -> dict[str, str]:
    """Choices in words when the model gives none: "alarm_cleared" is "Alarm cleared".

    Only plain lowercase words: "u16", "C" or "INFO" are what the owner reads elsewhere too.
    """
    return {
        o: key_words(o)
        for o in options
        if isinstance(o, str) and re.fullmatch(r"[a-z]+(_[a-z]+)*", o)
    }


def _node(schema: dict[str, Any], defs: dict[str, Any], name: str) -> dict[str, Any]:
    """One field of the JSON Schema as a form node (see the module's docstring)."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        return _node({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs, name)
    out: dict[str, Any] = {}
    options = schema.get("anyOf")
    if options:
        real = [o for o in options if o.get("type") != "null"]
        out["nullable"] = len(real) < len(options)
        inner = {**real[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
        return {**_node(inner, defs, name), **out}
    title = schema.get("title") or name
    out["title"] = key_words(name) if title.replace(" ", "_").lower() == name.lower() else title
    description = schema.get("description", "")
    unit = _UNIT.match(description)
    if unit:
        out["unit"] = unit.group(1)
        description = description[unit.end() :]
    description = owner_words(description)
    if description:
        out["help"] = description[:1].upper() + description[1:]
    for key in ("labels", "choices", "key_title", "value_title"):  # the model's hints (settings.py)
        if key in schema:
            out[key] = schema[key]
    if "default" in schema:
        out["default"] = schema["default"]
    kind = schema.get("type")
    if schema.get("writeOnly"):
        kind = "secret"
    elif "enum" in schema:
        kind = "enum"
        out["options"] = schema["enum"]
        out.setdefault("labels", _option_words(schema["enum"]))
    elif kind == "array":
        items = _node(schema.get("items", {}), defs, name)
        if "choices" in out:  # picked from the configuration (the page knows it)
            kind = "multi"
            out["options"] = []
        elif items["kind"] == "enum":
            kind = "multi"
            out["options"] = items["options"]
            out["labels"] = items["labels"]
        else:
            out["items"] = items
        for key, ours in (("minItems", "min_items"), ("maxItems", "max_items")):
            if key in schema:
                out[ours] = schema[key]
    elif kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        out["fields"] = {
            key: {**_node(sub, defs, key), "required": key in required}
            for key, sub in schema["properties"].items()
        }
        for key, sub in out["fields"].items():  # a section by its key, not its class name
            if sub["kind"] == "object" and sub["title"].endswith("Settings"):
                sub["title"] = key_words(key)
    elif kind == "object":
        kind = "map"
        out["values"] = _node(schema.get("additionalProperties", {}), defs, name)
    for key, ours in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("exclusiveMinimum", "gt"),
        ("exclusiveMaximum", "lt"),
        ("pattern", "pattern"),
        ("minLength", "min_length"),
        ("maxLength", "max_length"),
        ("format", "format"),
    ):
        if key in schema:
            out[ours] = schema[key]
    out["kind"] = kind or "string"
    return out


_KEY = re.compile(r"\b([a-z]+)(?:\.([a-z]+(?:_[a-z]+)*)|((?:_[a-z]+)+))\b")


def _say_keys(fields: dict[str, Any], top: dict[str, Any]) -> None:
    """Help that names another field's key names it by its label (in place, every level).

    "below full_current" is "below “Full current”" beside its sibling; "needs control.enabled"
    is "needs “Control: Enabled”".
    """

    def said(m: re.Match[str], own: str) -> str:
        first, dotted, snake = m.groups()
        if dotted is not None:
            section = top.get(first, {})
            inner = section.get("fields", {}).get(dotted)
            if inner is None:
                return m.group(0)
            return f"“{key_words(first)}: {inner['title']}”"
        key = first + snake
        node = fields.get(key, top.get(key)) if key != own else None
        return f"“{node['title']}”" if node is not None else m.group(0)

    # a field's own key in its help is a placeholder ("http://<mdns_name>.local/")
    for own, node in fields.items():
        if "help" in node:
            node["help"] = _KEY.sub(partial(said, own=own), node["help"])
        inner = node.get("items", node) if node.get("kind") == "array" else node
        if "fields" in inner:
            _say_keys(inner["fields"], top)


def form_schema() -> dict[str, Any]:
    """The Settings model as form nodes, and the groups the page shows them in."""
    schema = Settings.model_json_schema()
    root = _node(schema, schema.get("$defs", {}), "settings")
    _say_keys(root["fields"], root["fields"])
    return {
        "fields": root["fields"],
        "groups": [
            {"id": g.id, "title": g.title, "parts": [p._asdict() for p in g.parts]} for g in GROUPS
        ],
    }


def field_errors(err: ValidationError) -> list[dict[str, str]]:
    """Every error of a validation as {key: dotted key, msg: words}; "" is the whole file."""
    out = []
    for error in err.errors():
        loc = [str(p) for p in error["loc"]]
        # a tagged or nullable value adds the inner type's name to the key: not a field
        loc = [p for p in loc if not re.fullmatch(r"[a-z_]+\[.*\]|function-.*|int|str", p)]
        said = in_words(error)
        if loc[-1:] == ["[key]"]:  # a mapping's key, not its value
            loc, said = loc[:-1], f"the key {said}"
        out.append({"key": ".".join(loc), "msg": said})
    return out


def request_error(errors: Sequence[ErrorDetails]) -> str:
    """The first error of a refused request as one line in words, named by its field.

    "URL: needs at least 3 character(s)", not "body.url: String should have at least 3
    characters": the pages show it as it is.
    """
    if not errors:
        return "invalid request"
    loc = [p for p in errors[0]["loc"] if p not in ("body", "query", "path", "header", "cookie")]
    if errors[0]["type"] == "json_invalid":
        loc = []  # the number is a character position, not a field
    names = [key_words(p) if isinstance(p, str) else f"#{p + 1}" for p in loc]
    where = " ".join(names) or "The request"
    return f"{where}: {in_words(errors[0])}"
