"""Every file a user's action changes is written so that a power cut cannot undo it.

A power cut cannot be made here, so the test watches the real system calls (strace) of each
writer's real code in its own process: the new content is fsynced before the rename and the
directory is fsynced after it; only then is the change durable (docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bmsgate_common.durable import make_directory, temporary_path, write_durably
from tests.support.needs import needs

WRITERS = {
    "password": (
        "from bmsgate_api.auth import PasswordStore\n"
        "PasswordStore(path=folder / 'api' / 'password').set('correct horse battery')",
        "api/password",
    ),
    "tokens": (
        "from bmsgate_api.auth import Tokens\n"
        "Tokens(path=folder / 'api' / 'tokens.json').create('grafana')",
        "api/tokens.json",
    ),
    "config": (
        "from bmsgate_common import config_file as cf\n"
        "cf.save(folder / 'bmsgate.yaml', cf.assign({}, 'api.title', 'Garage'))",
        "bmsgate.yaml",
    ),
    "counters": (
        "from bmsgate_reader.counters import CounterStore\n"
        "from bmsgate_reader.logic import EnergyCounter\n"
        "CounterStore(folder / 'reader').save('garage', EnergyCounter(energy_in=1.5))",
        "reader/energy-garage.json",
    ),
}
SYSCALL = re.compile(r"^(?:\d+ +)?(\w+)\((.*)\) += 0$")  # strace -f -o: "PID call(args) = 0"


def syscalls(code: str, folder: Path) -> list[tuple[str, str]]:
    """The fsync and rename calls of ``code`` run in a new Python, with the paths of their fds."""
    log = folder.parent / "strace.log"
    # fmt: off
    run = subprocess.run(
        ["strace", "-f", "-y", "-o", str(log), "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         sys.executable, "-c", f"from pathlib import Path\nfolder = Path({str(folder)!r})\n{code}"],
        capture_output=True, text=True, timeout=60,
    )
    # fmt: on
    assert run.returncode == 0, run.stderr[-2000:]
    calls = []
    for line in log.read_text().splitlines():
        if m := SYSCALL.match(line):
            calls.append((m[1], m[2]))
    return calls


@needs(shutil.which("strace"), "strace is not installed")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_content_then_rename_then_directory_are_synced(tmp_path: Path, writer: str) -> None:
    code, name = WRITERS[writer]
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / name
    calls = syscalls(code, folder)
    tmp = temporary_path(path)
    order = [
        i
        for i, (call, args) in enumerate(calls)
        if (call.startswith("fsync") and f"<{tmp}>" in args)
        or (call.startswith("rename") and f'"{tmp}"' in args and f'"{path}"' in args)
        or (call.startswith("fsync") and f"<{path.parent}>" in args)
    ]
    described = [calls[i] for i in order]
    assert [c for c, _ in described][:1] == ["fsync"], calls
    assert described[1][0].startswith("rename"), calls
    assert any(f"<{path.parent}>" in args for _, args in described[2:]), calls
    assert path.exists() and not tmp.exists()


def test_new_directories_are_recorded_in_their_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file"
    write_durably(target, b"x")
    assert target.read_bytes() == b"x" and os.stat(target).st_mode & 0o777 == 0o600
    make_directory(tmp_path / "a" / "b")  # already there: nothing to do
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file"
    write_durably(target, b"old")
    with pytest.raises(TypeError):
        write_durably(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and not temporary_path(target).exists()
