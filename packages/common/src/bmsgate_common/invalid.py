"""A validation error in words: one rule for every place that shows one to a person.

The web UI's fields and refusals, a configuration file's one-line error and the history
service's refusals all say "must be at least 1", not pydantic's "Input should be greater than
or equal to 1".
"""

from __future__ import annotations

from typing import Any

from pydantic_core import ErrorDetails


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def in_words(error: ErrorDetails) -> str:
    """A pydantic error as a short sentence for beside its field."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "json_invalid":
        too_deep = "recursion" in str(ctx.get("error", ""))
        return (
            "not valid JSON: nested too deeply (recursion limit)" if too_deep else "not valid JSON"
        )
    if kind == "extra_forbidden":
        return "not a field bmsgate knows"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        word = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()), "")
        return f"must be {word} {_number(bound)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be yes or no"
    if kind == "string_pattern_mismatch":
        return "not in the expected form"
    if kind == "string_too_short":
        return f"needs at least {ctx.get('min_length')} character(s)"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}".replace("'", "")
    msg = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg
