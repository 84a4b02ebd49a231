"""Every backbone topic's pattern and MQTT flags, by kind, with no import.

topics.py pairs each with its payload model (the typed ``TopicSpec`` every service uses); the
lean reader (bmsgate_reader.lean), which runs without pydantic, reads them here.
"""

from __future__ import annotations

from typing import Final

DEFAULT_BASE: Final = "bmsgate"
# kind: (pattern relative to the base, with + for the pack, bus or service; retained; QoS)
ROUTES: Final[dict[str, tuple[str, bool, int]]] = {
    "state": ("bms/+/state", True, 1),
    "availability": ("bms/+/availability", True, 1),
    "alarm": ("bms/+/alarm", False, 1),
    "command": ("bms/+/set", False, 1),
    "result": ("bms/+/result", False, 1),
    "raw_lease": ("bms/+/raw/lease", False, 1),
    "raw_lease_state": ("bms/+/raw/lease/state", True, 1),
    "raw_tx": ("bms/+/raw/tx", False, 1),
    "raw_rx": ("bms/+/raw/rx", False, 1),
    "sniff": ("bus/+/sniff", False, 0),
    "sniff_set": ("bus/+/sniff/set", False, 1),
    "sniff_state": ("bus/+/sniff/state", True, 1),
    "daily": ("bms/+/daily", True, 1),
    "settings": ("bms/+/settings", True, 1),
    "service_status": ("service/+/status", True, 1),
    "service_restart": ("service/+/restart", False, 1),
    "service_logs": ("service/+/logs", False, 1),
    "service_log_lines": ("service/+/logs/reply", False, 1),
    "health": ("bms/+/health", True, 1),
    "history_request": ("history/+/request", False, 1),
    "history_reply": ("history/+/reply", False, 1),
    "history_files": ("history/+/files", False, 1),
    "history_files_reply": ("history/+/files/reply", False, 1),
    "notify_test": ("notifier/+/test", False, 1),
    "notify_test_result": ("notifier/+/test/reply", False, 1),
    "tunnel_command": ("bms/+/tunnel/set", False, 1),
    "tunnel_status": ("bms/+/tunnel/state", True, 1),
}


def topic(kind: str, name: str, base: str = DEFAULT_BASE) -> str:
    """The concrete topic of ``kind`` for one pack, bus or service ``name``."""
    return f"{base}/{ROUTES[kind][0].replace('+', name)}"
