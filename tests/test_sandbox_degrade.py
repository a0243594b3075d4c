"""Every isolation layer degrades on its own: a machine that refuses one still evaluates, and says which is off.

The machines are simulated: the sandbox server refuses each facility the way such a machine would
(SandboxPool(faults=...)). The suite runs as root and as a normal user in CI, so both sides of the
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
from autotrade.sandbox import layers
from autotrade.sandbox.execute import compute_features_and_signals, exec_block
from autotrade.sandbox.pool import Limits, SandboxPool

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
def machine(request: pytest.FixtureRequest) -> Iterator[tuple[SandboxPool, set[str]]]:
    """A pool whose server refuses the machine's faults, and the layers that must then be off."""
    faults, expected_off = MACHINES[request.param]
    with SandboxPool(faults=frozenset(faults)) as pool:
        yield pool, expected_off


def reference_signals(frame: pd.DataFrame) -> np.ndarray:
    _, signals, _ = compute_features_and_signals(exec_block(BASELINE), frame, BASELINE)
    return signals


@pytest.mark.parametrize("machine", list(MACHINES), indirect=True)
def test_a_refused_layer_is_named_and_the_evaluation_still_runs(
    machine: tuple[SandboxPool, set[str]], frame: pd.DataFrame
) -> None:
    pool, expected_off = machine
    output = pool.run_candidate(BASELINE, frame, [60, 100], Limits(timeout_s=20))
    assert np.array_equal(output.signals, reference_signals(frame))
    report = pool.probe_layers()
    off = {name for name, state in report.items() if state is not True}
    assert off == expected_off, report
    for name in off:
        assert isinstance(report[name], str) and report[name], f"{name} is off without saying why"


@pytest.mark.parametrize("machine", ["macos_like"], indirect=True)
def test_with_kernel_layers_refused_the_audit_hook_still_stops_a_write(
    machine: tuple[SandboxPool, set[str]], frame: pd.DataFrame, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    os.chmod(tmp_path, 0o777)  # writable by whoever the child runs as, so only the sandbox can stop the write
    block = (
        "def generate_features(df):\n"
        f"    pd.compat.sys.modules['builtins'].open({str(canary)!r}, 'w').write('x')\n"
        "    return df\n\ndef strategy_logic(row):\n    return 0\n"
    )
    with pytest.raises(CandidateError) as caught:
        machine[0].run_candidate(block, frame, (), Limits(timeout_s=20))
    assert "sandbox" in str(caught.value)
    assert not canary.exists()


def test_a_worker_whose_set_up_fails_is_a_sandbox_error_not_the_candidates(frame: pd.DataFrame) -> None:
    # The machine's fault: a run must stop on it, not record the candidate as broken.
    with SandboxPool(faults=frozenset({"child_dumpable"})) as pool:  # set-up of worker children only
        with pytest.raises(SandboxError, match="could not set up a worker"):
            pool.run_candidate(BASELINE, frame, (), Limits(timeout_s=20))


def test_two_pools_are_independent_faults_on_one_leave_the_other_whole(frame: pd.DataFrame) -> None:
    with SandboxPool(faults=frozenset({"linux"})) as refused, SandboxPool() as whole:
        crippled, intact = refused.probe_layers(), whole.probe_layers()
        assert np.array_equal(
            refused.run_candidate(BASELINE, frame).signals, whole.run_candidate(BASELINE, frame).signals
        )
    assert crippled["seccomp"] is not True and crippled["network_namespace"] is not True
    assert all(state is True for state in intact.values()), intact  # as on a machine that refuses nothing
    with SandboxPool(faults=frozenset({"child_dumpable"})) as broken, SandboxPool() as healthy:
        with pytest.raises(SandboxError, match="could not set up a worker"):
            broken.run_candidate(BASELINE, frame)
        assert np.array_equal(healthy.run_candidate(BASELINE, frame).signals, reference_signals(frame))
