"""Every isolation layer degrades on its own: a machine that refuses one still evaluates, and says which is off.

The machines are simulated: the sandbox server refuses each facility the way such a machine would
(worker.simulate_faults). The suite runs as root and as a normal user in CI, so both sides of the
privilege decision are exercised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_ohlcv

from autotrade.candidate import baseline_source, extract_block
from autotrade.errors import CandidateError, SandboxError
from autotrade.sandbox import layers, worker
from autotrade.sandbox.execute import compute_features_and_signals, exec_block
from autotrade.sandbox.worker import Limits, probe_layers, run_candidate

AS_ROOT = os.getuid() == 0
BASELINE = extract_block(baseline_source())
# Root drops to nobody; without the filesystem view, only where nobody can read the libraries (pyenv under
# /root cannot be): then that layer goes off too, and says so.
NOBODY_NEEDS_VIEW = AS_ROOT and layers.can_drop_to_nobody(layers.library_roots(), False, 0) is not True
WITHOUT_VIEW = {"unprivileged_user"} if NOBODY_NEEDS_VIEW else set()

# fault set -> the layers that must then be off (beyond them, every layer must stay on)
MACHINES = {
    "nothing_refused": (set(), set()),  # a normal user on Debian/Fedora/Arch: everything holds, evaluations run
    "ubuntu_apparmor": ({"user_namespace"}, set() if AS_ROOT else {"network_namespace", "filesystem_view"}),
    "container_without_namespaces": ({"namespaces"}, {"network_namespace", "filesystem_view"} | WITHOUT_VIEW),
    "container_without_mounts": ({"mount"}, {"filesystem_view"} | WITHOUT_VIEW),
    "no_libseccomp": ({"seccomp"}, {"seccomp"}),
    "setuid_refused": ({"nobody"}, {"unprivileged_user"} if AS_ROOT else set()),
    "macos_like": ({"linux"}, {"network_namespace", "filesystem_view", "seccomp"} | WITHOUT_VIEW),
    "everything_refused": (
        {"namespaces", "mount", "seccomp", "nobody", "linux"},
        {"network_namespace", "filesystem_view", "seccomp"} | ({"unprivileged_user"} if AS_ROOT else set()),
    ),
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_ohlcv(150, 3, "2016-01-01")


@pytest.fixture
def machine(request: pytest.FixtureRequest) -> Iterator[set[str]]:
    """A sandbox server that refuses the machine's faults; the real one is restored afterwards."""
    faults, expected_off = MACHINES[request.param]
    previous = worker.simulate_faults(frozenset(faults))
    try:
        yield expected_off
    finally:
        worker.simulate_faults(previous)


def reference_signals(frame: pd.DataFrame) -> np.ndarray:
    _, signals, _ = compute_features_and_signals(exec_block(BASELINE), frame, BASELINE)
    return signals


@pytest.mark.parametrize("machine", list(MACHINES), indirect=True)
def test_a_refused_layer_is_named_and_the_evaluation_still_runs(machine: set[str], frame: pd.DataFrame) -> None:
    output = run_candidate(BASELINE, frame, [60, 100], Limits(timeout_s=20))
    assert np.array_equal(output.signals, reference_signals(frame))
    report = probe_layers()
    off = {name for name, state in report.items() if state is not True}
    assert off == machine, report
    for name in off:
        assert isinstance(report[name], str) and report[name], f"{name} is off without saying why"


@pytest.mark.parametrize("machine", ["macos_like"], indirect=True)
def test_with_kernel_layers_refused_the_audit_hook_still_stops_a_write(
    machine: set[str], frame: pd.DataFrame, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    os.chmod(tmp_path, 0o777)  # writable by whoever the child runs as, so only the sandbox can stop the write
    block = (
        "def generate_features(df):\n"
        f"    pd.compat.sys.modules['builtins'].open({str(canary)!r}, 'w').write('x')\n"
        "    return df\n\ndef strategy_logic(row):\n    return 0\n"
    )
    with pytest.raises(CandidateError) as caught:
        run_candidate(block, frame, (), Limits(timeout_s=20))
    assert "sandbox" in str(caught.value)
    assert not canary.exists()


def test_a_worker_whose_set_up_fails_is_a_sandbox_error_not_the_candidates(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's fault: a run must stop on it, not record the candidate as broken.
    def refuse(*_: object) -> None:
        raise OSError(1, "prctl(PR_SET_DUMPABLE): Operation not permitted")

    monkeypatch.setattr(worker.layers, "make_undumpable", refuse)  # set-up of worker children only
    worker._SERVER.fork()  # a server forked from this process carries the patch
    try:
        with pytest.raises(SandboxError, match="could not set up a worker"):
            run_candidate(BASELINE, frame, (), Limits(timeout_s=20))
    finally:
        worker._SERVER.close()
