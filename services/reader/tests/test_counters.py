"""The counter file keeps bmsgate's own SOC beside the energy totals, so a restart goes on."""

from __future__ import annotations

from pathlib import Path

from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import BusSettings, MqttSettings
from bmsgate_reader.counters import CounterStore
from bmsgate_reader.logic import EnergyCounter
from bmsgate_reader.service import Reader


def test_own_soc_is_saved_with_the_counter_and_read_back(tmp_path: Path) -> None:
    store = CounterStore(tmp_path)
    store.save("garage", EnergyCounter(energy_in=1.5), own_soc=42.25)
    assert store.load_soc("garage") == 42.25
    assert store.load("garage").energy_in == 1.5
    store.save("shed", EnergyCounter())  # a pack without own_soc: no key, nothing to seed
    assert store.load_soc("shed") is None
    assert store.load_soc("nowhere") is None
    (tmp_path / "energy-odd.json").write_text('{"own_soc": 250}')
    assert store.load_soc("odd") is None  # not a SOC: not used


def test_a_write_cut_short_leaves_a_temporary_file_the_next_start_removes(tmp_path: Path) -> None:
    store = CounterStore(tmp_path)
    store.save("garage", EnergyCounter(energy_in=2.0))
    stale = tmp_path / ".energy-garage.json.tmp"
    stale.write_text('{"energy_in": 3')  # a power cut mid-write: half a file, never renamed
    assert CounterStore(tmp_path).load("garage").energy_in == 2.0  # the last complete one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energy-garage.json"]


def test_a_restarted_reader_goes_on_counting_from_the_saved_soc(tmp_path: Path) -> None:
    CounterStore(tmp_path).save("garage", EnergyCounter(), own_soc=63.0)
    bus = BusSettings.model_validate(
        {
            "port": "/dev/ttyUSB9",
            "protocol": "daly_classic",
            "packs": [{"id": "garage", "own_soc": True}, {"id": "shed", "address": 2}],
        }
    )
    backbone = Backbone(MqttSettings(host="127.0.0.1", port=1), "reader-0")
    reader = Reader(bus, backbone, counters=CounterStore(tmp_path))
    assert reader.packs["garage"].soc.soc == 63.0
    assert reader.packs["shed"].soc.soc is None
