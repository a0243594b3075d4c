"""Duplicates caught by novelty under `--policy random`: `python benchmarks/bench_novelty.py [iterations]`.

Prints `key: value` lines, like bench_engine.py: one run on the bundled S&P 500 as `autotrade prepare --offline`
leaves it (default 60 iterations, seed 1), then what its records say about duplicates.
"""

from __future__ import annotations

import ast
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from recording import RecordingReporter  # noqa: E402 - the tests folder is on the path now

from autotrade.data.prepared import prepare_data  # noqa: E402
from autotrade.evaluation.novelty import correlation, decode_positions, structure_hash  # noqa: E402
from autotrade.propose.prompts import load_prompt_files  # noqa: E402
from autotrade.research.config import RunSettings  # noqa: E402
from autotrade.research.loop import start_run  # noqa: E402


def bench_novelty(tmp: Path, iterations: int) -> dict[str, float | int]:
    """Share of the random policy's proposals caught as structure and position twins, and the evaluation seconds
    the structure twins did not spend (their twins' evaluation times); and, for comparison, how many proposals a
    rule that also blanked numbers would have refused (the report's families), with the seconds they took."""
    data = tmp / "data"
    prepare_data(offline=True, data_dir=data)
    settings = RunSettings(max_iter=iterations, max_fails=iterations, seed=1, policy="random", data_dir=str(data))
    began = time.perf_counter()
    result = start_run(settings, None, RecordingReporter(), prompts=load_prompt_files(REPO), name="n", root=tmp)
    wall = time.perf_counter() - began
    records = [json.loads((result.path / f"iter_{i}_results.json").read_text()) for i in range(result.iterations)]
    proposals = [r for r in records if r["iteration"] > 0]
    structure = [r for r in proposals if r.get("twin") is not None and r.get("twin_correlation") is None]
    positions = [r for r in proposals if r.get("twin_correlation") is not None]
    saved = sum(r["saved_s"] for r in structure)
    spent = sum(r["eval_s"] for r in records)
    # What a rule blanking numbers too would have refused: a proposal in the family of an earlier ok attempt.
    # Reusing a family twin's result would misstate it whenever the numbers change what it earns.
    families: dict[str, dict] = {}
    family_twins: list[tuple[dict, dict]] = []
    for record in records:
        family = structure_hash(ast.parse(record["block"])) if record["block"] else None
        if record["iteration"] > 0 and family in families:
            family_twins.append((record, families[family]))
        if record["status"] == "ok" and family is not None:
            families.setdefault(family, record)
    misstated = [
        (own, first)
        for own, first in family_twins
        if own["val_return"] is None or abs(own["val_return"] - first["val_return"]) > 0.001
    ]
    # How close the ok proposals came to the 0.99 bar: each one's highest correlation with the members before it.
    closest = []
    for record in proposals:
        if record.get("positions") is None:
            continue
        mine = decode_positions(record["positions"])
        members = records[record["iteration"] - 1]["population"]
        values = [correlation(mine, decode_positions(records[m]["positions"])) for m in members]
        closest.append(max((v for v in values if v is not None), default=0.0))
    return {
        "novelty_proposals": len(proposals),
        "novelty_ok": sum(r["status"] == "ok" for r in proposals),
        "novelty_structure_twins": len(structure),
        "novelty_position_twins": len(positions),
        "novelty_duplicate_share": round((len(structure) + len(positions)) / max(len(proposals), 1), 3),
        "novelty_structure_share": round(len(structure) / max(len(proposals), 1), 3),
        "novelty_position_share": round(len(positions) / max(len(proposals), 1), 3),
        "novelty_eval_s": round(spent, 1),
        "novelty_saved_s": round(saved, 1),
        "novelty_saved_share_of_evaluation": round(saved / (spent + saved), 3) if spent + saved else 0.0,
        "novelty_wall_s": round(wall, 1),
        "novelty_family_twins_numbers_blanked": len(family_twins),
        "novelty_family_twin_share": round(len(family_twins) / max(len(proposals), 1), 3),
        "novelty_family_twins_eval_s": round(sum(r["eval_s"] for r, _ in family_twins), 1),
        "novelty_family_twins_val_return_differs": len(misstated),
        "novelty_closest_member_correlation_max": round(max(closest, default=0.0), 3),
        "novelty_closest_member_correlation_at_least_0_9": sum(v >= 0.9 for v in closest),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        for key, value in bench_novelty(Path(folder), int(sys.argv[1]) if len(sys.argv) > 1 else 60).items():
            print(f"{key}: {value}")
