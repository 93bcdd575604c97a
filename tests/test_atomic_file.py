"""batch/core/atomic_file.py, the writer of every small file (summaries, reports, pid files, run
records), on a disk that really fills up or is read-only: nothing is left behind."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from batch.core.atomic_file import write_atomically
from tests.test_reliability import fill, remount_read_only, small_filesystem

PREVIOUS = "previous content\n"


def test_a_write_that_does_not_fit_leaves_the_previous_file_and_no_temporary_file(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", 64 * 1024) as disk:
        target = disk / "summary.json"
        target.write_text(PREVIOUS)
        fill(disk)
        with pytest.raises(OSError) as raised:
            write_atomically(target, "new content\n" * 1000)
        assert raised.value.errno == errno.ENOSPC
        assert target.read_text() == PREVIOUS
        assert sorted(os.listdir(disk)) == ["filler", "summary.json"]


def test_a_read_only_folder_leaves_the_previous_file(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", 64 * 1024) as disk:
        target = disk / "report.html"
        target.write_text(PREVIOUS)
        remount_read_only(disk)
        with pytest.raises(OSError) as raised:
            write_atomically(target, "<html></html>\n")
        assert raised.value.errno == errno.EROFS
        assert target.read_text() == PREVIOUS
        assert os.listdir(disk) == ["report.html"]


def test_the_new_file_replaces_the_old_readable_by_all_and_its_folder_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "run.exit"
    write_atomically(target, "exit_code=0\n")
    write_atomically(target, b"exit_code=143\n")
    assert target.read_text() == "exit_code=143\n"
    # What a monitoring user reads (the summary JSON): 0644, not mkstemp's 0600.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["run.exit"]
