"""The storage figures of the System page: the archive folder's size, the disk, the write rate."""

from __future__ import annotations

import os
from pathlib import Path

from bmsgate_history.storage import (
    WINDOW,
    WriteRate,
    folder_bytes,
    storage_figures,
    written_bytes,
)

MIB = 1024 * 1024


def write(path: Path, size: int) -> None:
    """``size`` bytes on the disk itself (fsync), as a commit of the archive puts them."""
    with path.open("wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def test_the_folder_size_counts_its_own_files_only(tmp_path: Path) -> None:
    write(tmp_path / "archive.sqlite", 3000)
    write(tmp_path / "archive.sqlite-wal", 500)
    (tmp_path / "old").mkdir()
    write(tmp_path / "old" / "elsewhere", 9999)  # not the archive's
    (tmp_path / "link").symlink_to(tmp_path / "old" / "elsewhere")
    assert folder_bytes(tmp_path) == 3500
    assert folder_bytes(tmp_path / "missing") == 0  # before the first start: nothing, no error


def test_the_rate_is_between_the_oldest_and_newest_sample_of_the_hour() -> None:
    rate = WriteRate()
    assert rate.add(0.0, 1000) is None  # one sample: no rate yet
    assert rate.add(10.0, 2000) == 100.0
    assert rate.add(1800.0, 2000 + 179_000) == 100.0
    # an hour and more after the first sample: it is left out, the rate is the last hour's
    assert rate.add(WINDOW + 100.0, 2000 + 179_000) == 0.0
    assert rate.samples[0][0] == 1800.0
    # a counter that went back (another process's after a restart): counting starts again
    assert rate.add(WINDOW + 200.0, 5) is None
    assert rate.add(WINDOW + 210.0, 1005) == 100.0


def test_the_figures_from_a_real_folder_and_disk(tmp_path: Path) -> None:
    rate = WriteRate()
    first = storage_figures(tmp_path, rate)
    assert first["archive_bytes"] == 0 and first["disk_write_rate"] is None
    before = written_bytes()
    assert before is not None  # Linux: /proc/self/io
    write(tmp_path / "archive.sqlite", 2 * MIB)
    after = written_bytes()
    assert after is not None and after - before >= 2 * MIB
    second = storage_figures(tmp_path, rate)
    disk = os.statvfs(tmp_path)
    assert second["archive_bytes"] == 2 * MIB
    assert second["disk_total_bytes"] == disk.f_blocks * disk.f_frsize
    free = second["disk_free_bytes"]
    assert isinstance(free, int) and abs(free - disk.f_bavail * disk.f_frsize) < 64 * MIB
    written_rate = second["disk_write_rate"]
    # at least the 2 MiB over the seconds between the two calls
    assert isinstance(written_rate, float) and written_rate > 0
    (t0, w0), (t1, w1) = rate.samples[0], rate.samples[-1]
    assert w1 - w0 >= 2 * MIB and written_rate == (w1 - w0) / (t1 - t0)
