"""The effective configuration as plain data, with every secret masked unless asked for.

Shared by ``bmsgate config export`` and the API's Settings page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "********"


def plain(value: Any, *, secrets: bool) -> Any:
    """A settings value as YAML-ready data; secrets masked unless ``secrets``."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() if secrets else MASK
    if isinstance(value, BaseModel):
        return {
            name: plain(getattr(value, name), secrets=secrets) for name in type(value).model_fields
        }
    if isinstance(value, list | tuple):
        return [plain(v, secrets=secrets) for v in value]
    if isinstance(value, dict):
        return {k: plain(v, secrets=secrets) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
