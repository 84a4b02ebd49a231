from __future__ import annotations

import logging

from bmsgate_notifier.sender import SecretFilter, check_url, mask, with_priority
from tests.support.notify import POVER


def test_mask_and_check() -> None:
    assert mask(POVER) == "pover://****@****"
    assert mask("ntfy://ntfy.sh/topic") == "ntfy://****"
    assert check_url(POVER) is None
    assert "nosuch://****" in (check_url("nosuch://abc") or "")
    assert "needs a scheme" in (check_url("just-a-token") or "")


def test_priority_added_unless_the_url_has_one() -> None:
    assert with_priority("psafer://KEY", "high").endswith("?priority=1")
    assert with_priority(POVER + "?priority=low", "high").endswith("?priority=low")
    assert with_priority("json://h/x", "high") == "json://h/x"


def test_secret_filter_masks_any_record() -> None:
    record = logging.LogRecord("apprise", logging.WARNING, "", 0, "failed %s", (POVER,), None)
    SecretFilter([POVER]).filter(record)
    assert "uQiRzpo4" not in record.getMessage() and "pover://****@****" in record.getMessage()


def test_a_restarted_notifier_replaces_its_log_filter() -> None:
    # in bmsgate run the notifier shares a process: each (re)start must not add a filter
    from bmsgate_common.settings import NotifierSettings
    from bmsgate_notifier.service import protect_logs

    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        first = NotifierSettings.model_validate({"targets": [{"name": "a", "url": POVER}]})
        other = "json://hooks.example.org/secret-path-7f3a"
        second = NotifierSettings.model_validate({"targets": [{"name": "b", "url": other}]})
        protect_logs(first)
        newest = protect_logs(second)
        assert [f for f in handler.filters if isinstance(f, SecretFilter)] == [newest]
        record = logging.LogRecord("x", logging.INFO, "", 0, "%s %s", (POVER, other), None)
        newest.filter(record)
        assert (
            "uQiRzpo4" not in record.getMessage() and "secret-path-7f3a" not in record.getMessage()
        )
    finally:
        root.removeHandler(handler)
