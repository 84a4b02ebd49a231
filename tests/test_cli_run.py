"""`bmsgate run`: one command starts the pipeline on a simulator, prints the URL, stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate.services import SERVICES
from tests.support.mqtt import listen
from tests.support.needs import needs
from tests.support.procs import Mosquitto, find_mosquitto, wait_for_api, wait_until
from tests.support.tree import run_argv

pytestmark = pytest.mark.integration


# `bmsgate run` itself, the private Mosquitto, and the one process its services share (forked
# from it; each service a thread there): reader, api, modbus, history and, as no configuration
# file exists and the first setup is under way, the notifier for the setup page's test message
EXPECTED_PROCESSES = 3
# with --isolate, a process per service instead, forked from that one (the zygote), but the
# publisher and the tunnel: without targets, banks or control they have nothing to do
ISOLATED_PROCESSES = 3 + len(SERVICES) - 2


def run_command(http: int, data: Path, *, isolate: bool = False) -> list[str]:
    """`bmsgate run` on free ports (502 may be taken or need privileges)."""
    return run_argv("--data-dir", data, *(["--isolate"] if isolate else []), http=http)


def processes_using(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (children keep their config path)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@needs(find_mosquitto(), "mosquitto is not installed")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_the_simulator_and_stops_every_child(tmp_path: Path, sig: int) -> None:
    http = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        run_command(http, data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"bmsgate is running: web UI at http://127.0.0.1:{http}/"
        state = wait_until(
            lambda: (
                (
                    r := httpx.get(f"http://127.0.0.1:{http}/api/packs/sim-1/state", timeout=2)
                ).status_code
                == 200
                and r.json()
            ),
            timeout=20,
        )
        assert state["protocol"] == "daly_classic" and state["cell_count"] == 16
        assert len(processes_using(str(data))) == EXPECTED_PROCESSES
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_using(str(data)) == []
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert (data / "run" / "config.yaml").stat().st_mode & 0o077 == 0  # secrets file: owner only


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bmsgate.yaml"
    config.write_text("api:\n  prot: 80\n")
    # fmt: off
    done = subprocess.run(
        run_argv(config=config),
        capture_output=True, text=True, timeout=30, check=False,
    )
    # fmt: on
    assert done.returncode == 2
    assert done.stderr.strip() == f"bmsgate run: config error in {config}: unknown key 'api.prot'"


def test_service_subcommands_run_the_container_entry_points(tmp_path: Path) -> None:
    for service in ("reader", "api"):
        # fmt: off
        done = subprocess.run(
            [sys.executable, "-m", "bmsgate.cli", service, "--config", str(tmp_path / "missing.yaml")],
            capture_output=True, text=True, timeout=30, check=False,
        )
        # fmt: on
        assert done.returncode == 2
        assert done.stderr.startswith(f"bmsgate {service}: config file ")


@needs(find_mosquitto(), "mosquitto is not installed")
@pytest.mark.parametrize("isolate", [False, True])
def test_children_die_with_a_killed_supervisor(tmp_path: Path, isolate: bool) -> None:
    http = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        run_command(http, data, isolate=isolate),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    expected = ISOLATED_PROCESSES if isolate else EXPECTED_PROCESSES
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("bmsgate is running")
        wait_until(lambda: len(processes_using(str(data))) == expected)
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
    wait_until(lambda: processes_using(str(data)) == [], timeout=15)


def private_mosquitto(data: Path) -> int | None:
    """The pid of the private Mosquitto of the ``bmsgate run`` on ``data``."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    conf = str(data / "run" / "mosquitto" / "mosquitto.conf")
    found = [line.split()[0] for line in out.splitlines() if line.rstrip().endswith(conf)]
    return int(found[0]) if len(found) == 1 else None


@needs(find_mosquitto(), "mosquitto is not installed")
def test_a_killed_private_mosquitto_is_restarted_and_states_flow_again(tmp_path: Path) -> None:
    http = free_port()
    data = tmp_path / "data"
    log = tmp_path / "run.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            run_command(http, data), stdout=subprocess.PIPE, stderr=err, text=True
        )
    state = f"http://127.0.0.1:{http}/api/packs/sim-1/state"

    def newer_state(than: datetime) -> bool:
        got = httpx.get(state, timeout=2)
        return got.status_code == 200 and datetime.fromisoformat(got.json()["ts"]) > than

    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("bmsgate is running")
        wait_until(lambda: newer_state(datetime.min.replace(tzinfo=UTC)), timeout=20)
        first = wait_until(lambda: private_mosquitto(data))
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: (pid := private_mosquitto(data)) != first and pid, timeout=20)
        back = datetime.now(UTC)
        wait_until(lambda: newer_state(back), timeout=60)  # read, sent and heard after the restart
        assert private_mosquitto(data) == second and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
    said = [line for line in log.read_text().splitlines() if "mosquitto" in line]
    assert len(said) == 2, said  # it started once, and once it ended and came back
    port = said[0].rsplit(":", 1)[1]  # the same port: the services' backbones reconnect to it
    # a broker that lived under a minute waits twice its last wait (1 s), as a child does
    want = f"private mosquitto exited with code -9; restarting it on 127.0.0.1:{port} in 2 s"
    assert said[1].endswith(want), said
    assert "Traceback" not in log.read_text()


def test_the_restart_delay_doubles_for_quick_ends_and_resets_after_a_minute() -> None:
    from bmsgate.run import restart_delay

    waits, last = [], 1.0
    for _ in range(8):  # a crash loop: each run ends after 2 s
        last = restart_delay(last, 2.0)
        waits.append(last)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert restart_delay(60.0, 61.0) == 1.0  # it ran more than a minute: start again soon
    assert restart_delay(0.0, 0.0) == 1.0  # after a restart on request (no wait) it ended at once


def test_plan_leaves_out_the_services_with_nothing_to_do() -> None:
    from bmsgate.run import plan_children

    bus = {"port": "/dev/a", "protocol": "daly_classic", "packs": [{"id": "a"}, {"id": "b"}]}
    base = {"mqtt": {"host": "h"}, "buses": [bus], "modbus": {"enabled": True}}
    conf = Path("run/config.yaml")
    assert set(plan_children(base, conf)) == {"reader-0", "api", "modbus", "history"}
    # during the first setup the notifier runs without targets: it sends the setup's test message
    assert "notifier" in plan_children(base, conf, setup=True)
    wanted = {
        "publisher": {"banks": [{"id": "ab", "packs": ["a", "b"]}]},
        "notifier": {"notifier": {"targets": [{"name": "phone", "url": "json://h"}]}},
        "tunnel": {"control": {"enabled": True}},
    }
    for service, section in wanted.items():
        assert service in plan_children({**base, **section}, conf)
    assert "publisher" in plan_children({**base, "publisher": {"targets": [{"name": "t"}]}}, conf)
    no_modbus = {**base, "modbus": {"enabled": False}}
    assert "modbus" not in plan_children(no_modbus, conf)
    assert "modbus" in plan_children({**base, "modbus": {"enabled": False, "push": [{}]}}, conf)


@pytest.mark.parametrize("shared", [True, False])
async def test_a_config_change_starts_and_stops_the_services_it_needs(
    tmp_path: Path,
    mosquitto: Mosquitto,
    daly_pty: str,
    caplog: pytest.LogCaptureFixture,
    shared: bool,
) -> None:
    from bmsgate.run import Supervisor
    from bmsgate.zygote import Shared, share, stop_zygote
    from bmsgate_common.settings import Settings

    share(shared)  # threads of one process (bmsgate run), or a process each (--isolate)

    def settings(**more: object) -> Settings:
        bus = {"port": daly_pty, "protocol": "daly_classic", "packs": [{"id": "shed"}]}
        # fmt: off
        return Settings.model_validate({
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port}, "buses": [bus],
            "api": {"host": "127.0.0.1", "port": free_port()},
            "modbus": {"enabled": False}, "tunnel": {"host": "127.0.0.1", "port": free_port()},
            "data_dir": str(tmp_path / "data"), **more,
        })
        # fmt: on

    async def online(service: str) -> None:
        async with listen(mosquitto.port, f"bmsgate/service/{service}/status") as seen:
            await seen.wait_for(lambda s: any(p["state"] == "online" for p in s.on("status")), 30)

    caplog.set_level("INFO", logger="bmsgate.run")
    sup = Supervisor(tmp_path / "run", only=["reader", "history", "notifier", "tunnel"])
    try:
        plain = settings()
        await sup.apply(plain)
        assert set(sup.children) == {"reader-0", "history"}
        assert "left out: notifier (no notifier targets), tunnel (control.enabled is false)" in (
            caplog.text
        )
        await sup.apply(settings(control={"enabled": True}))  # as the watcher does on a change
        assert set(sup.children) == {"reader-0", "history", "tunnel"}
        await online("tunnel")
        tunnel = sup.children["tunnel"].process
        assert tunnel is not None and tunnel.returncode is None
        assert isinstance(tunnel, Shared) is shared  # a thread of the zygote, or a process
        await sup.apply(plain)
        assert set(sup.children) == {"reader-0", "history"} and tunnel.returncode is not None
        async with listen(mosquitto.port, "bmsgate/service/tunnel/status") as seen:
            [status] = await seen.wait_for(lambda s: s.on("status"))
        # not a failure: the notifier does not report it down
        assert status["state"] == "offline"
        assert status["detail"] == {"left_out": "control.enabled is false"}
    finally:
        await sup.close()
        await stop_zygote()
        share(False)


def test_plan_restarts_only_what_a_change_touches() -> None:
    from bmsgate.run import plan_children

    # fmt: off
    base = {
        "mqtt": {"host": "h"}, "data_dir": "d", "log_level": "INFO",
        "buses": [{"port": "/dev/a", "protocol": "daly_classic", "packs": [{"id": "a"}]},
                  {"port": "/dev/b", "protocol": "jk_pb", "packs": [{"id": "b"}]}],
        "notifier": {"low_soc": 20, "targets": [{"name": "phone", "url": "json://h"}]},
        "publisher": {"targets": [{"name": "ha"}]}, "control": {"enabled": True},
    }
    # fmt: on
    conf = Path("run/config.yaml")
    before = plan_children(base, conf, edit_file=Path("site.yaml"))
    assert set(before) == {"reader-0", "reader-1", *(s for s in SERVICES if s != "reader")}
    assert before["api"].argv[-2:] == ["--edit-config", "site.yaml"]
    notifier_only = plan_children({**base, "notifier": {**base["notifier"], "low_soc": 10}}, conf)
    changed = {n for n in before if before[n].fingerprint != notifier_only[n].fingerprint}
    assert changed == {"api", "notifier"}
    second_bus = {**base, "buses": [base["buses"][0], {**base["buses"][1], "poll_interval": 1}]}
    changed = {
        n
        for n, s in plan_children(second_bus, conf).items()
        if before[n].fingerprint != s.fingerprint
    }
    assert changed == {"reader-1", "api", "publisher", "modbus", "history", "notifier", "tunnel"}
    one_bus = plan_children({**base, "buses": base["buses"][:1]}, conf)
    assert (
        "reader-1" not in one_bus
        and one_bus["reader-0"].fingerprint == before["reader-0"].fingerprint
    )


@needs(find_mosquitto(), "mosquitto is not installed")
def test_first_start_without_a_file_then_a_bad_file_then_a_good_one(tmp_path: Path) -> None:
    http = free_port()
    site = tmp_path / "site.yaml"
    argv = run_command(http, tmp_path / "data")
    # the file named by $BMSGATE_CONFIG, as the container images do (Dockerfile)
    env = {**os.environ, "BMSGATE_CONFIG": str(site)}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    base = f"http://127.0.0.1:{http}"
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("bmsgate is running")
        # no file yet: the demo pack runs and the setup page is due
        wait_until(
            lambda: httpx.get(f"{base}/api/packs/sim-1/state", timeout=2).status_code == 200, 30
        )
        assert httpx.get(f"{base}/api/setup/status", timeout=5).json() == {
            "needed": True,
            "config_file": None,
        }  # the path only after a login
        site.write_text(
            "buses: [{port: /dev/null, protocol: daly_classic, packs: [{id: x, address: 0}]}]\n"
        )
        time.sleep(2)  # the watcher looks twice a second
        # the bad file changed nothing: the demo pack is still polled
        assert httpx.get(f"{base}/api/packs/sim-1/state", timeout=5).status_code == 200
        good = {
            "tunnel": {"port": free_port()},
            "buses": [
                {
                    "port": str(tmp_path / "data" / "run" / "ttySIM0"),
                    "protocol": "daly_classic",
                    "packs": [{"id": "shed"}],
                }
            ],
        }
        site.write_text(yaml.safe_dump(good))
        assert httpx.get(f"{base}/api/setup/status", timeout=5).json()["needed"] is False
        time.sleep(3)  # applied: the API restarts with the new file; let it come up
        wait_for_api(base, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    err = proc.stderr.read() if proc.stderr else ""
    bad = [line for line in err.splitlines() if "configuration not applied" in line]
    # the range depends on the bus's protocol, so the bus names the pack, its address and the range
    assert len(bad) == 1 and "'buses.0'" in bad[0], err[-2000:]
    assert "pack 'x': address 0 is outside 1..192 for daly_classic" in bad[0], bad[0]
    assert "Traceback" not in err


async def test_a_removed_pack_leaves_no_retained_message(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str
) -> None:
    from bmsgate.run import Supervisor
    from bmsgate.zygote import stop_zygote
    from bmsgate_common.settings import Settings

    def settings(*packs: dict[str, object]) -> Settings:
        bus = {"port": daly_pty, "protocol": "daly_classic", "poll_interval": 1, "packs": packs}
        return Settings.model_validate(
            {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port}, "buses": [bus]}
        )

    async def retained(pack: str) -> list[str]:
        async with listen(mosquitto.port, f"bmsgate/bms/{pack}/#") as seen:
            await asyncio.sleep(1.0)  # the broker sends the retained messages on subscribing
        return sorted(m.topic.rsplit("/", 1)[1] for m in seen.messages if m.retain)

    sup = Supervisor(tmp_path / "run", only=["reader"])
    try:
        await sup.apply(settings({"id": "shed"}, {"id": "gone", "address": 9}))
        async with listen(mosquitto.port, "bmsgate/bms/shed/availability") as seen:
            await seen.wait_for(lambda s: s.on("availability"), within=20)
        await sup.apply(settings({"id": "shed"}))
        # the stopping reader said "offline" for both packs; the removed one's is deleted after
        assert await retained("gone") == []
        assert "availability" in await retained("shed")
    finally:
        await sup.close()
        await stop_zygote()
