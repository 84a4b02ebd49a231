"""CSV per day, a month as a zip, refused paths, and the command line."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from datetime import UTC, date
from pathlib import Path

import pytest
import yaml

from bmsgate_common.settings import ArchiveSettings, Settings
from bmsgate_history.archive import Archive
from bmsgate_history.export import (
    ExportError,
    day_csv,
    export_day,
    export_month,
    safe_path,
    write_month_zip,
)
from bmsgate_history.sample import Sample
from bmsgate_history.service import hold_writer
from tests.support.simdrive import T0  # 2024-03-04 00:00 UTC

FOREVER = ArchiveSettings(raw_days=10**5, minute_days=10**5, quarter_days=10**5)


def fill(path: Path) -> Archive:
    archive = Archive(path, FOREVER)
    for day in range(3):
        for i in range(3):
            archive.add(
                "p1",
                Sample(
                    T0 + day * 86_400_000 + i * 5000,
                    55.5,
                    13.25,
                    -2.5,
                    -33.1,
                    (3.301, 3.3, 3.305, 3.299),
                    (21.5, 22.0),
                    30.1,
                    80.5,
                    100.0,
                    True,
                    False,
                    i == 1,
                ),
            )
    archive.commit()
    return archive


def test_a_day_as_csv(tmp_path: Path) -> None:
    archive = fill(tmp_path / "a.sqlite")
    rows = list(csv.reader(io.StringIO(day_csv(archive, "p1", date(2024, 3, 5), UTC))))
    assert rows[0] == [
        "time",
        "cell_1",
        "cell_2",
        "cell_3",
        "cell_4",
        "soc",
        "voltage",
        "current",
        "power",
        "temp_1",
        "temp_2",
        "mos_temperature",
        "cell_delta",
        "charge_mos",
        "discharge_mos",
        "balancing",
        "remaining_capacity",
    ]
    assert len(rows) == 4
    assert rows[1] == [
        "2024-03-05T00:00:00+00:00",
        "3.3010",
        "3.3000",
        "3.3050",
        "3.2990",
        "55.5",
        "13.250",
        "-2.500",
        "-33.1",
        "21.5",
        "22.0",
        "30.1",
        "0.0060",
        "1",
        "0",
        "0",
        "80.500",
    ]
    assert rows[2][15] == "1"


def test_days_past_raw_retention_export_minute_means(tmp_path: Path) -> None:
    archive = fill(tmp_path / "a.sqlite")
    archive.conn.execute("DELETE FROM raw")
    rows = list(csv.reader(io.StringIO(day_csv(archive, "p1", date(2024, 3, 4), UTC))))
    assert len(rows) == 2 and rows[1][1] == "3.3010"


def test_a_month_as_zip(tmp_path: Path) -> None:
    archive = fill(tmp_path / "a.sqlite")
    buf = io.BytesIO()
    names = write_month_zip(archive, "p1", 2024, 3, UTC, buf)
    assert names == ["p1_2024-03-04.csv", "p1_2024-03-05.csv", "p1_2024-03-06.csv"]
    with zipfile.ZipFile(buf) as z:
        assert z.namelist() == names
    path = export_month(archive, "p1", 2024, 3, UTC, tmp_path)
    assert path == tmp_path.resolve() / "p1_2024-03.zip"
    assert export_day(archive, "p1", date(2024, 3, 4), UTC, tmp_path).exists()


@pytest.mark.parametrize("name", ["../x.csv", "..", "a/b.csv", "/etc/passwd", "", "x\0.csv"])
def test_paths_outside_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExportError):
        safe_path(tmp_path, name)


def test_bad_pack_ids_are_refused(tmp_path: Path) -> None:
    archive = fill(tmp_path / "a.sqlite")
    with pytest.raises(ExportError):
        export_day(archive, "../../etc", date(2024, 3, 4), UTC, tmp_path)


def test_command_line_export_and_delete(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data / "history" / "archive.sqlite").close()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data), "timezone": "UTC"}))
    out = tmp_path / "out"
    out.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # fmt: off
        return subprocess.run(
            [sys.executable, "-m", "bmsgate_history", "--config", str(config), *args],
            capture_output=True, text=True, check=False, timeout=30,
        )
        # fmt: on

    done = cli("export", "--pack", "p1", "--day", "2024-03-04", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "p1_2024-03-04.csv").read_text().count("\n") == 4
    done = cli("export", "--pack", "../p1", "--day", "2024-03-04", "--out", str(out))
    assert done.returncode == 2 and "not a pack id" in done.stderr
    assert cli("packs").stdout == "p1\n"
    done = cli("delete", "--pack", "p1", "--from", "2024-03-04", "--to", "2024-03-05")
    assert done.returncode == 2 and "--yes" in done.stderr
    # while another process (the history service) holds the writer lock, deleting is refused
    with hold_writer(Settings.model_validate({"data_dir": str(data)})):
        done = cli("delete", "--pack", "p1", "--from", "2024-03-04", "--to", "2024-03-05", "--yes")
        assert done.returncode == 2 and "the history service is running" in done.stderr
    done = cli("delete", "--pack", "p1", "--from", "2024-03-04", "--to", "2024-03-05", "--yes")
    assert done.returncode == 0 and "deleted 3 samples" in done.stdout
    done = cli("export", "--pack", "p1", "--month", "2024-03", "--out", str(out))
    with zipfile.ZipFile(out / "p1_2024-03.zip") as z:
        assert z.namelist() == ["p1_2024-03-05.csv", "p1_2024-03-06.csv"]
