"""The setup page's test message, sent by the notifier process over the backbone with the real
Apprise library to a local receiver: to a configured target or to the URL being saved, login
required, and the answer is only "sent" or "failed" (an unreachable port and a failing service
look the same: the test is no probe of what the gateway reaches)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bmsgate.broker import free_port
from tests.support.procs import Mosquitto, Proc, api_config, start_service, wait_for_api, wait_until
from tests.support.receiver import receiver

pytestmark = pytest.mark.integration

SECRET = "Hook-Secret-9f2c"


def test_the_test_message_goes_through_the_notifier(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    with receiver() as (got, rport):
        phone = {"name": "phone", "url": f"json://127.0.0.1:{rport}/inbox"}
        config, base = api_config(
            tmp_path, mosquitto.port, heartbeat=1, notifier={"targets": [phone]}
        )
        notifier = start_service(tmp_path, "notifier", config)
        procs += [notifier, start_service(tmp_path, "api", config)]
        wait_until(lambda: "notifier running" in notifier.log(), 20)
        wait_for_api(base)
        with httpx.Client(base_url=base, timeout=40) as ui:
            anon = ui.post("/api/setup/notify-test", json={"target": "phone"})
            assert anon.status_code == 401
            assert ui.post("/api/auth/setup", json={"password": "the password"}).status_code == 204

            def test(body: dict[str, str]) -> httpx.Response:
                # the API learns the notifier is online from its retained status
                return wait_until(
                    lambda: (
                        (r := ui.post("/api/setup/notify-test", json=body)).status_code != 503 and r
                    ),
                    20,
                )

            # a configured target, by name
            sent = test({"target": "phone"})
            assert sent.status_code == 200 and sent.json() == {"result": "sent"}
            assert got.on("/inbox")[0]["title"] == "bmsgate test message"
            # the URL the user is saving
            url = f"json://user:{SECRET}@127.0.0.1:{rport}/typed"
            sent = test({"url": url})
            assert sent.status_code == 200 and sent.json() == {"result": "sent"}
            assert got.on("/typed")[0]["message"].startswith("If you read this")

            # a closed port and a failing service give the same answer
            closed = test({"url": f"json://127.0.0.1:{free_port()}/x"})
            got.failing = True
            failing = test({"url": f"json://127.0.0.1:{rport}/down"})
            got.failing = False
            for answer in (closed, failing):
                assert answer.status_code == 502 and answer.json() == {"detail": "failed"}

            # refusals before anything is sent: one line, the URL never echoed
            for body, why in (
                ({"url": "no-scheme"}, "not an Apprise URL"),
                ({"url": "nosuchservice://x"}, "Apprise does not accept"),
                ({"target": "nobody"}, "no notifier target named 'nobody'"),
            ):
                refused = test(body)
                assert refused.status_code == 400 and why in refused.json()["detail"], body
                assert body.get("url", "@@") not in refused.json()["detail"]
            both = ui.post("/api/setup/notify-test", json={"target": "phone", "url": url})
            assert both.status_code == 400 and "one of them" in both.json()["detail"]
        log = notifier.log()
        assert "Traceback" not in log and SECRET not in log
        assert "test message for api to target phone: sent" in log
