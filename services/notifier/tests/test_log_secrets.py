"""The notifier's target secrets in a process of its own and in one shared with other services.

A child Python process sets up logging as a service alone does (container) or as the process
``bmsgate run`` shares does, then the notifier's code holds its target URL's secrets and the
real Apprise library sends to a local receiver at DEBUG (Apprise and urllib3 print the URL from
Apprise's worker threads). In the shared process an API thread logs an audit line that holds
the notifier's host and a notifier secret as plain text: it stays readable.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.receiver import receiver

PASSWORD = "pw-Secret-5e1"
TOKEN = "hook-7f3a9b2c1d"

CHILD = r"""
import asyncio, logging, sys, threading
import apprise
from bmsgate_common.logs import SERVICE, recent_lines, setup_logging
from bmsgate_notifier.service import protect_logs
from bmsgate_common.settings import NotifierSettings

mode, url, token = sys.argv[1:]
shared = mode == "shared"
setup_logging("DEBUG", None if shared else "notifier", shared=shared)  # as zygote.py, service.py
log = logging.getLogger("bmsgate_check")


def notifier():
    if shared:
        SERVICE.set("notifier")  # as run_hosted does for the service's thread
    protect_logs(NotifierSettings.model_validate({"targets": [{"name": "hook", "url": url}]}))
    sender = apprise.Apprise()
    sender.add(url)
    assert asyncio.run(sender.async_notify(title="t", body="b"))
    log.info("target hook at %s", url)
    try:
        raise OSError(f"cannot reach {url}")
    except OSError:
        log.exception("send failed")
    stray = threading.Thread(target=log.info, args=("a thread of its own: %s", token))
    stray.start()  # a plain thread does not carry the service: tied to none
    stray.join()
    print("\n".join(recent_lines()), flush=True)


def api():
    SERVICE.set("api")
    log.info("command set_charge_mos False to garage, asked by the owner's session from "
             "127.0.0.1 (%s)", token)


worker = threading.Thread(target=notifier)
worker.start()
worker.join()
if shared:
    worker = threading.Thread(target=api)
    worker.start()
    worker.join()
"""


def run_child(mode: str) -> tuple[list[str], str]:
    """The child's stderr lines and what it printed (its kept lines), after one real send."""
    with receiver() as (got, port):
        url = f"json://bms:{PASSWORD}@127.0.0.1:{port}/{TOKEN}"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, url, TOKEN],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert got.on(f"/{TOKEN}"), "Apprise did not deliver"
    return done.stderr.splitlines(), done.stdout


@pytest.mark.parametrize("mode", ["shared", "alone"])
def test_target_secrets_never_in_the_notifiers_lines(mode: str) -> None:
    lines, kept = run_child(mode)
    for text in (*lines, kept):
        assert (PASSWORD not in text and TOKEN not in text) or "[api]" in text, text
    # Apprise's and urllib3's lines come from Apprise's worker threads: masked as the notifier's
    tag = "[notifier]"
    sent = [s for s in lines if "JSON POST URL: http://127.0.0.1:" in s]
    assert sent and all(tag in s and "/****" in s for s in sent), sent
    assert [s for s in lines if tag in s and "urllib3" in s and '"POST /**** HTTP' in s]
    # the host is no secret: it stays readable; the traceback is masked too
    assert [s for s in lines if "target hook at ****" in s or ("127.0.0.1" in s and tag in s)]
    assert "OSError: cannot reach ****" in "\n".join(lines)
    assert "JSON POST URL" in kept  # the System page's lines are the same masked lines
    if mode == "shared":
        untied = [s for s in lines if "a thread of its own" in s]
        assert untied and all("[services]" in s and s.endswith(": ****") for s in untied), untied
        [audit] = [s for s in lines if "asked by" in s]
        assert "[api]" in audit
        assert audit.endswith(f"asked by the owner's session from 127.0.0.1 ({TOKEN})")
