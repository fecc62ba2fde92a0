"""Split the run bank once into a tuning half and a held-out half.

Stratified by label (healthy, collapsed) so that both halves hold collapses: within each label the runs are
ordered by the SHA-256 of their file name and dealt alternately, tuning first. The order depends on nothing but
the names, so re-running gives the same halves; a run added later joins the half its position deals it, which
may move others, so the split is written into manifest.json (`split`) once and `--check` verifies it.

Thresholds are tuned on the `tuning` half only (benchmarks/calibration.py reports both halves).

`fresh` is a second held-out set, gathered after the first two halves had been looked at: runs added later are
written into the manifest with `split: fresh` by hand (with their labels, before anything is run on them) and are
never dealt, so they cannot move the original halves. They are never used for tuning; they exist to report the
collapse rules on runs no one has seen the rules' verdicts on. The deal below covers only the entries whose split is
not `fresh`, and `--check` verifies the fresh entries keep `fresh`.

    python benchmarks/bank/split.py          # writes `split` into tests/data/bank/manifest.json
    python benchmarks/bank/split.py --check  # exits 1 if the manifest's split differs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "bank" / "manifest.json"


FRESH = "fresh"


def split(entries: list[dict]) -> dict[str, str]:
    """Return file -> `tuning` or `held_out` for the original deal, and `fresh` for the later held-out set."""
    halves: dict[str, str] = {e["file"]: FRESH for e in entries if e.get("split") == FRESH}
    dealt = [e for e in entries if e.get("split") != FRESH]
    for label in sorted({e["label"] for e in dealt}):
        files = sorted((e["file"] for e in dealt if e["label"] == label), key=lambda f: hashlib.sha256(f.encode()).hexdigest())
        for index, file in enumerate(files):
            halves[file] = "tuning" if index % 2 == 0 else "held_out"
    return halves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the manifest, write nothing")
    args = parser.parse_args()
    entries = json.loads(MANIFEST.read_text())
    halves = split(entries)
    if args.check:
        wrong = [e["file"] for e in entries if e.get("split") != halves[e["file"]]]
        for file in wrong:
            print(f"DIFF {file}: manifest {next(e.get('split') for e in entries if e['file'] == file)}, split {halves[file]}")
        return 1 if wrong else 0
    for entry in entries:
        entry["split"] = halves[entry["file"]]
    MANIFEST.write_text(json.dumps(entries, indent=1) + "\n")
    for half in ("tuning", "held_out", FRESH):
        chosen = [e for e in entries if e["split"] == half]
        collapsed = sum(e["label"] == "collapsed" for e in chosen)
        print(f"{half}: {len(chosen)} runs, {collapsed} collapsed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
