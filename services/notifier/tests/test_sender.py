from __future__ import annotations

from bmsgate_notifier.sender import check_url, mask, secrets_of, with_priority
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


def test_secret_parts_of_target_urls() -> None:
    # Apprise's own marks: Pushover's user key and token, whatever they look like
    assert {"uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"} <= secrets_of(POVER)
    assert "gotifykey" in secrets_of("gotify://gotify.lan/gotifykey")  # a word, but private
    # a generic webhook: its secret path and password, never its host, port or plain words
    parts = secrets_of("json://me:pw-9x@hooks.example.org:8443/api/webhook/secret-path-7f3a")
    assert {"secret-path-7f3a", "pw-9x", "me:pw-9x"} <= parts
    assert not parts & {"hooks.example.org", "8443", "api", "webhook", "me"}
    assert not secrets_of("json://127.0.0.1:8080/hook") - {"json://127.0.0.1:8080/hook"}


def test_a_restarted_notifier_keeps_masking_a_removed_target() -> None:
    # every start adds its targets' parts for its service: a removed target's stay masked
    from bmsgate_common.logs import masked
    from bmsgate_common.settings import NotifierSettings
    from bmsgate_notifier.service import protect_logs

    first = NotifierSettings.model_validate({"targets": [{"name": "a", "url": POVER}]})
    other = "json://hooks.example.org/secret-path-7f3a"
    second = NotifierSettings.model_validate({"targets": [{"name": "b", "url": other}]})
    protect_logs(first)
    protect_logs(second)
    line = masked(f"{POVER} and {other} at hooks.example.org")
    assert "uQiRzpo4" not in line and "secret-path-7f3a" not in line
    assert line.endswith("at hooks.example.org")
