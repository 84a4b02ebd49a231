"""The Settings page's forms: the model as fields, errors per field, secrets never sent back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bmsgate_api.forms import GROUPS
from bmsgate_bms.registry import info
from bmsgate_common.config_view import MASK
from bmsgate_common.service_table import restarts
from bmsgate_common.settings import Settings

if TYPE_CHECKING:
    from services.api.tests.conftest import SiteUi

BUS = {"port": "/dev/ttyUSB7", "protocol": "daly_classic", "packs": [{"id": "garage"}]}
FILE = {
    "mqtt": {"host": "broker", "username": "u", "password": "pw-secret-9"},
    "buses": [BUS],
    "publisher": {"targets": [{"name": "cloud", "password": "target-secret-7"}]},
    "history": {"influx": {"enabled": True, "token": "influx-token-3"}},
}


LEAKS = ("docs/", ".md", "bmsgate_", "<base>", "python -m", "set_keep_awake")
# a developer's words, said otherwise to an owner ("empty: no alert", "must wait")
JARGON = ("`", "null", "429", "scrypt", "X-Forwarded", "fsync", "WAL", "|I|", "UVP", "re-arming")


def _every(node: object, key: str) -> list[str]:
    """Every value of ``key`` anywhere in a form schema."""
    if isinstance(node, dict):
        own = [node[key]] if isinstance(node.get(key), str) else []
        return own + [x for v in node.values() for x in _every(v, key)]
    return [x for v in node for x in _every(v, key)] if isinstance(node, list) else []


def _lists(node: object) -> list[dict[str, Any]]:
    """Every list-of-sections node of a form schema."""
    if isinstance(node, dict):
        own = [node] if node.get("kind") == "array" and "fields" in node.get("items", {}) else []
        return own + [x for v in node.values() for x in _lists(v)]
    return [x for v in node for x in _lists(v)] if isinstance(node, list) else []


def test_every_section_of_the_settings_is_in_a_group() -> None:
    top = set(Settings.model_fields) - {"version"}  # the file's format: migrations set it
    shown = {p.key.split(".")[0] for g in GROUPS for p in g.parts}
    assert top <= shown, top - shown
    history = {f"history.{k}" for k in Settings.model_fields["history"].annotation.model_fields}  # type: ignore[union-attr]
    assert history <= {p.key for g in GROUPS for p in g.parts}


async def test_the_forms_get_labels_units_ranges_choices_and_masked_secrets(
    site_ui: SiteUi,
) -> None:
    async with site_ui(FILE) as ui:
        got = await ui.get("/api/settings/form")
        assert got.status_code == 200
        text = got.text
        for secret in ("pw-secret-9", "target-secret-7", "influx-token-3"):
            assert secret not in text
        form = got.json()
        assert form["values"]["mqtt"]["password"] == MASK
        assert form["values"]["history"]["influx"]["token"] == MASK
        bus = form["schema"]["fields"]["buses"]["items"]["fields"]
        assert bus["poll_interval"]["unit"] == "s"
        assert bus["poll_interval"]["title"] == "Poll interval"
        assert bus["poll_interval"]["min"] == 0 and bus["poll_interval"]["default"] == 5.0
        assert "daly_classic" in bus["protocol"]["options"] and bus["protocol"]["required"]
        assert bus["packs"]["items"]["fields"]["address"]["max"] == 247
        assert form["schema"]["fields"]["mqtt"]["fields"]["password"]["kind"] == "secret"
        events = form["schema"]["fields"]["notifier"]["fields"]["targets"]["items"]["fields"]
        assert events["events"]["kind"] == "multi" and "alarm" in events["events"]["options"]
        # an owner's words: protocols by label, members ticked from the packs, no two fields
        # titled alike, no module or docs file names in the help
        assert bus["protocol"]["labels"]["daly_classic"] == info("daly_classic").label
        assert events["events"]["labels"]["alarm_cleared"] == "Alarm cleared"
        members = form["schema"]["fields"]["banks"]["items"]["fields"]["packs"]
        assert members["kind"] == "multi" and members["choices"] == "packs"
        fields = form["schema"]["fields"]
        assert bus["offline_after"]["title"] != fields["stale_after"]["title"]
        full = bus["packs"]["items"]["fields"]["full_cell_voltage"]["help"]
        assert "at or below “Full current” for “Full time”" in full, full
        push = bus["packs"]["items"]["fields"]["push_soc"]["help"]
        assert push.endswith("needs “Control: Enabled”"), push
        helps = [h for h in _every(fields, "help") if any(w in h for w in LEAKS + JARGON)]
        assert not helps, helps
        # a section by its key's words, never its class name
        titles = [t for t in _every(fields, "title") if t.endswith("Settings")]
        assert set(titles) <= {f["items"]["title"] for f in _lists(fields)}, (
            titles
        )  # (an entry's class name only names "Add target", "Add viewer")
        assert [g["title"] for g in form["schema"]["groups"]][:2] == [
            "Batteries and buses",
            "Outputs",
        ]


async def test_a_bad_value_is_a_message_beside_its_field_and_nothing_is_written(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    async with site_ui(FILE) as ui:
        before = (tmp_path / "site.yaml").read_text()
        values = (await ui.get("/api/settings/form")).json()["values"]
        values["buses"][0]["poll_interval"] = -1
        values["buses"][0]["packs"][0]["address"] = "two"
        values["mqtt"]["port"] = 70000
        bad = await ui.put("/api/settings/form", json={"values": values})
        assert bad.status_code == 400
        errors = {e["key"]: e["msg"] for e in bad.json()["errors"]}
        assert errors == {
            "buses.0.poll_interval": "must be at least 0",
            "buses.0.packs.0.address": "must be a whole number",
            "mqtt.port": "must be at most 65535",
        }
        assert "\n" not in bad.json()["detail"]
        # a rule over several fields is reported at the section it concerns
        values = (await ui.get("/api/settings/form")).json()["values"]
        values["buses"][0]["packs"].append({"id": "shed"})  # address 1 as well
        bad = await ui.put("/api/settings/form", json={"values": values})
        assert bad.json()["errors"] == [
            {"key": "buses.0", "msg": "two packs on one bus share an address"}
        ]
        assert (tmp_path / "site.yaml").read_text() == before


async def test_a_good_save_keeps_secrets_and_says_which_services_restart(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    async with site_ui(FILE) as ui:
        values = (await ui.get("/api/settings/form")).json()["values"]
        values["buses"][0]["poll_interval"] = 2.5
        saved = await ui.put("/api/settings/form", json={"values": values})
        assert saved.status_code == 200, saved.text
        out = saved.json()
        # a bus: its reader, and everything that reads the buses (not the notifier: no target);
        # the api last, so that the page's requests for the others come through
        assert out["restarted"] == ["reader-0", "publisher", "modbus", "history", "api"]
        assert out["applies_now"] is False
        written = yaml.safe_load((tmp_path / "site.yaml").read_text())
        assert written["buses"][0]["poll_interval"] == 2.5
        assert written["mqtt"]["password"] == "pw-secret-9"  # masked in, stored value kept
        assert written["history"]["influx"]["token"] == "influx-token-3"
        assert MASK not in json.dumps(written)
        # the first notifier target starts the notifier; nothing else reads that section
        values["notifier"] = {"targets": [{"name": "phone", "url": "json://127.0.0.1:9/x"}]}
        out = (await ui.put("/api/settings/form", json={"values": values})).json()
        assert out["started"] == ["notifier"]
        assert out["restarted"] == ["api"]
        # a secret with nothing stored cannot stay masked
        values["tunnel"] = {"host": MASK}
        bad = await ui.put("/api/settings/form", json={"values": values})
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["key"] == "tunnel.host"


async def test_a_rule_over_several_sections_is_said_at_its_entry(site_ui: SiteUi) -> None:
    async with site_ui(FILE) as ui:
        values = (await ui.get("/api/settings/form")).json()["values"]
        values["banks"] = [{"id": "house", "packs": ["garage", "shed"]}]
        bad = await ui.put("/api/settings/form", json={"values": values})
        assert bad.status_code == 400
        assert bad.json()["errors"] == [
            {"key": "banks.0.packs", "msg": "bank 'house' names unknown packs: shed"}
        ]
        values["banks"] = []
        values["buses"].append({**BUS, "port": "/dev/ttyUSB8"})  # the same pack id again
        bad = await ui.put("/api/settings/form", json={"values": values})
        assert bad.json()["errors"] == [
            {"key": "buses.1.packs.0.id", "msg": "pack id 'garage' is used twice"}
        ]


async def test_a_save_from_a_page_older_than_the_file_is_refused(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    async with site_ui(FILE) as ui:
        form = (await ui.get("/api/settings/form")).json()
        assert len(form["revision"]) == 64
        # meanwhile the file is changed elsewhere (the YAML editor, another browser)
        path = tmp_path / "site.yaml"
        other = {**FILE, "publisher": {"targets": [{"name": "new", "password": "new-pw"}]}}
        path.write_text(yaml.safe_dump(other))
        before = path.read_text()
        stale = {"values": form["values"], "revision": form["revision"]}
        refused = await ui.put("/api/settings/form", json=stale)
        assert refused.status_code == 409, refused.text
        assert "changed since this page was loaded" in refused.json()["detail"]
        assert path.read_text() == before
        # from the file as it is now: saved, and the answer gives the next revision
        fresh = (await ui.get("/api/settings/form")).json()
        saved = await ui.put(
            "/api/settings/form", json={"values": fresh["values"], "revision": fresh["revision"]}
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["revision"] == (await ui.get("/api/settings/form")).json()["revision"]
        assert yaml.safe_load(path.read_text())["publisher"]["targets"][0]["password"] == "new-pw"


def test_restarts_follow_what_each_service_reads() -> None:
    base = {"buses": [BUS, {**BUS, "port": "/dev/ttyUSB8", "packs": [{"id": "shed"}]}]}
    changed = {**base, "buses": [BUS, {**base["buses"][1], "poll_interval": 1}]}  # type: ignore[dict-item]
    assert restarts(base, changed) == (["reader-1", "api", "modbus", "history"], [], [])
    controlled = {**base, "control": {"enabled": True}}
    assert restarts(base, controlled) == (["reader-0", "reader-1", "api", "modbus"], ["tunnel"], [])
    assert restarts(controlled, base) == (["reader-0", "reader-1", "api", "modbus"], [], ["tunnel"])
