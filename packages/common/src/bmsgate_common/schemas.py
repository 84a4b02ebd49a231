"""JSON Schemas of the backbone messages and an AsyncAPI document, generated from the topic map.

``schemas/`` in the repository holds the output; a test regenerates it and fails on any drift, so
non-Python consumers can rely on the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .models import PACK_ID_PATTERN
from .topics import DEFAULT_BASE, TOPICS
from .version import VERSION


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def schema_files() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of every message model in the topic map."""
    out: dict[str, dict[str, Any]] = {}
    for spec in TOPICS.values():
        model = spec.model
        version = model.model_fields["v"].default if "v" in model.model_fields else 1
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{_snake(model.__name__)}.v{version}.schema.json"
        out[schema["$id"]] = schema
    return out


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document of the backbone: channels, their messages and who sends them."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for kind, spec in TOPICS.items():
        # what the "+" level names: a service, a bus (its reader), a history client, else a pack
        level = {"service": "service", "bus": "bus", "history": "client", "notifier": "client"}.get(
            spec.pattern.split("/")[0], "pack"
        )
        address = f"{DEFAULT_BASE}/{spec.pattern.replace('+', '{' + level + '}')}"
        message = spec.model.__name__
        file = f"{_snake(message)}.v1.schema.json"
        channels[kind] = {
            "address": address,
            "description": f"{'retained' if spec.retained else 'not retained'}, QoS {spec.qos}",
            "parameters": {level: {"description": f"{level} id, pattern {PACK_ID_PATTERN}"}},
            "messages": {message: {"payload": {"$ref": file}, "contentType": "application/json"}},
        }
        operations[f"publish_{kind}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{kind}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "bmsgate backbone",
            "version": VERSION,
            "description": "MQTT topics between bmsgate services; the base topic is configurable.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    }


def render() -> dict[str, str]:
    """Every generated file's name and exact text."""
    files = {name: schema for name, schema in schema_files().items()}
    files["asyncapi.json"] = asyncapi()
    return {
        name: json.dumps(body, indent=2, ensure_ascii=False) + "\n" for name, body in files.items()
    }


def write(directory: Path) -> list[Path]:
    """Write the generated files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
