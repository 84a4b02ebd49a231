"""Counts the reliability suite reports: examples run per fuzz target, messages sent, errors seen.

Each test adds to COUNTS; the conftest prints the table at the end of the session, and
docs/reliability.md quotes it.
"""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
