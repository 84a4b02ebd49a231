"""Secrets in log lines: what counts as one, and in whose lines a service's secrets are masked."""

from __future__ import annotations

import contextvars
import logging

from bmsgate_common.logs import MASK, SERVICE, _Masking, hold_secrets, masked, secret_parts


def as_service(name: str) -> contextvars.Context:
    """A context in which ``name`` is the running service (as run_hosted sets it)."""
    ctx = contextvars.Context()
    ctx.run(SERVICE.set, name)
    return ctx


def test_secret_parts_of_a_url_are_credentials_and_generated_values_not_host_names() -> None:
    url = "json://me:pw-x@hooks.example.org:8443/api/webhook/a1b2c3d4e5?token=Zq8WkXvY2m&fmt=text"
    parts = secret_parts(url)
    assert {url, "pw-x", "me:pw-x", "a1b2c3d4e5", "Zq8WkXvY2m"} <= parts
    assert not parts & {"me", "hooks.example.org", "8443", "api", "webhook", "token", "text"}
    # a token in the host's place (no dot): generated-looking, so secret; a host name is not
    assert "a6ea9wcqfxhh1cbu6pbr68vt7u" in secret_parts("pover://a6ea9wcqfxhh1cbu6pbr68vt7u")
    assert secret_parts("mqtt://broker.lan:1883/bms") == {"mqtt://broker.lan:1883/bms"}
    assert "p@ss-word" in secret_parts("http://u:p%40ss-word@127.0.0.1:8086")  # decoded too
    assert secret_parts("plain-password") == {"plain-password"}


def test_each_service_masks_only_its_own_secrets() -> None:
    notifier, api = as_service("notifier-t1"), as_service("api-t1")
    notifier.run(hold_secrets, ["Tok-notifier-91f3", "ab", None])  # "ab": too short to mask
    api.run(hold_secrets, ["api-pw-4c2e"])
    line = "asked by owner from 127.0.0.1 with Tok-notifier-91f3, api-pw-4c2e, ab"
    assert (
        masked(line, "notifier-t1") == f"asked by owner from 127.0.0.1 with {MASK}, api-pw-4c2e, ab"
    )
    assert (
        masked(line, "api-t1")
        == f"asked by owner from 127.0.0.1 with Tok-notifier-91f3, {MASK}, ab"
    )
    assert masked(line, "reader-t1") == line  # holds nothing
    # a line tied to no service: any service of the process may have logged it
    assert masked(line, None) == f"asked by owner from 127.0.0.1 with {MASK}, {MASK}, ab"


def test_the_longest_secret_wins_and_a_restart_only_adds() -> None:
    ctx = as_service("notifier-t2")
    ctx.run(hold_secrets, ["json://me:pw-5d1a@h.example.org/x", "pw-5d1a"])
    ctx.run(hold_secrets, ["other-8e2b"])  # a restart with other targets
    line = "sent to json://me:pw-5d1a@h.example.org/x; pw-5d1a; other-8e2b"
    assert masked(line, "notifier-t2") == f"sent to {MASK}; {MASK}; {MASK}"


def test_the_formatter_masks_the_traceback_and_by_the_logging_service() -> None:
    ctx = as_service("history-t3")
    ctx.run(hold_secrets, ["influx-tok-77aa"])
    record = logging.LogRecord("x", logging.ERROR, "", 0, "write failed", None, None)
    try:
        raise ValueError("token influx-tok-77aa refused")
    except ValueError as err:
        record.exc_info = (ValueError, err, err.__traceback__)
    formatter = _Masking("%(message)s")
    shown = ctx.run(formatter.format, record)
    assert "influx-tok-77aa" not in shown and f"token {MASK} refused" in shown
    # the same record in another service's line: not that service's secret
    assert "influx-tok-77aa" in as_service("api-t3").run(formatter.format, record)
