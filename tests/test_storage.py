"""A full disk or a read-only directory: one line naming the path (and the space a write needed), a state that
never claims a dead process is running, and a run that resumes exactly once there is room again.

The real-filesystem tests mount a small tmpfs, which needs root; as a normal user they skip, and the read-only
test uses chmod instead (which root bypasses). A monkeypatched fsync stands in for a full disk everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from recording import RecordingReporter
from test_loop import CANARY, settings
from test_resume import assert_consistent, per_iteration_replies
from test_rundir import assert_one_line_error, random_run
from typer.testing import CliRunner

from autotrade import fileio
from autotrade.cli.app import app
from autotrade.propose.prompts import load_prompt_files
from autotrade.research.config import model_settings
from autotrade.research.loop import resume_run, start_run
from autotrade.research.rundir import RunDir


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for this test (root only; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full; return it (delete it to free the space)."""
    ballast = disk / f"ballast-{uuid.uuid4().hex}"
    with open(ballast, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


class FillingReporter(RecordingReporter):
    """Fills the disk when the loop starts evaluating a given iteration."""

    def __init__(self, disk: Path, iteration: int) -> None:
        super().__init__()
        self.disk, self.at, self.ballast = disk, iteration, None

    def phase(self, iteration: int, text: str) -> None:
        if (iteration, text) == (self.at, "evaluating") and self.ballast is None:
            self.ballast = fill(self.disk)


def test_a_disk_filling_up_mid_run_stops_cleanly_and_the_run_resumes_exactly(
    small_disk: Path,
    openai_server: OpenAIServer,
    tmp_path: Path,
    tiny_data: Path,  # noqa: F811 - fixtures
) -> None:
    openai_server.default = per_iteration_replies
    endpoint = model_settings(base_url=openai_server.base_url, environ={"OPENAI_API_KEY": CANARY})
    reporter = FillingReporter(small_disk, 2)
    result = start_run(
        settings(tiny_data, max_iter=5, seed=5),
        endpoint,
        reporter,
        prompts=load_prompt_files(tmp_path),
        name="full",
        root=small_disk / "train",
    )
    run = small_disk / "train" / "full"
    assert (result.status, result.stop_reason, result.iterations) == ("stopped", "storage_error", 2)
    assert f"cannot write {run}/" in result.message and "no space left on its disk (this write needs" in result.message
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["next_iteration"]) == ("stopped", 2)
    assert reporter.ballast is not None
    reporter.ballast.unlink()
    resumed = resume_run(RunDir(run), RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 5)
    assert_consistent(run, seed=5, size=3, max_iter=5)


def test_a_run_started_on_a_full_disk_is_one_line_and_leaves_no_directory(
    small_disk: Path,
    tiny_data: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811 - fixture
) -> None:
    monkeypatch.chdir(small_disk)
    ballast = fill(small_disk)
    args = ["run", "--name", "late", "--policy", "random", "--max-iter", "1", "--quiet", "--data", str(tiny_data)]
    assert_one_line_error(CliRunner().invoke(app, args), "cannot write train/late/", "no space left on its disk")
    assert not (small_disk / "train" / "late").exists()
    ballast.unlink()
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output


def test_report_on_a_full_disk_is_one_line(
    small_disk: Path, tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    made = random_run(tmp_path, tiny_data, "done", max_iter=1)
    shutil.copytree(made, small_disk / "train" / "done")
    monkeypatch.chdir(small_disk)
    fill(small_disk)
    assert_one_line_error(
        CliRunner().invoke(app, ["report", "done"]), "cannot write train/done/", "no space left on its disk"
    )


def test_a_run_on_a_read_only_filesystem_is_one_line(
    small_disk: Path, tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    made = random_run(tmp_path, tiny_data, "done", max_iter=1)
    shutil.copytree(made, small_disk / "train" / "done")
    state = json.loads((made / "state.json").read_text())
    (small_disk / "train" / "done" / "state.json").write_text(json.dumps({**state, "status": "stopped"}))  # resumable
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    monkeypatch.chdir(small_disk)
    for args in (["resume", "done"], ["report", "done"]):
        assert_one_line_error(CliRunner().invoke(app, args), "cannot write train/done/", "read-only filesystem")


def test_a_run_in_a_directory_without_write_permission_is_one_line(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    if os.geteuid() == 0:
        pytest.skip("root writes through any permission (the tmpfs test covers read-only as root)")
    made = random_run(tmp_path, tiny_data, "done", max_iter=1)
    monkeypatch.chdir(tmp_path)
    made.chmod(0o555)
    try:
        assert_one_line_error(
            CliRunner().invoke(app, ["report", "done"]), "cannot write train/done/", "permission denied"
        )
    finally:
        made.chmod(0o755)


def test_a_failing_fsync_mid_run_leaves_a_stopped_state_and_a_resumable_run(
    openai_server: OpenAIServer,
    tmp_path: Path,
    tiny_data: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811 - fixtures
) -> None:
    # A full disk often shows first at fsync (delayed allocation); here every fsync fails from iteration 2's
    # evaluation on.
    openai_server.default = per_iteration_replies
    endpoint = model_settings(base_url=openai_server.base_url, environ={"OPENAI_API_KEY": CANARY})
    real_fsync, full = os.fsync, []

    def fsync(fd: int) -> None:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    class Filling(RecordingReporter):
        def phase(self, iteration: int, text: str) -> None:
            if (iteration, text) == (2, "evaluating"):
                full.append(True)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    result = start_run(
        settings(tiny_data, max_iter=4, seed=5),
        endpoint,
        Filling(),
        prompts=load_prompt_files(tmp_path),
        name="f",
        root=tmp_path / "train",
    )
    monkeypatch.undo()
    run = tmp_path / "train" / "f"
    assert (result.status, result.stop_reason, result.iterations) == ("stopped", "storage_error", 2)
    assert "no space left on its disk" in result.message
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["next_iteration"]) == ("stopped", 2)
    resumed = resume_run(RunDir(run), RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 4)
    assert_consistent(run, seed=5, size=3, max_iter=4)
