"""How long `ablate plan` takes on the shipped sweeps, end to end (process start to exit).

Usage: python benchmarks/plan.py [--repeats N]   -> writes benchmarks/results/plan.md
Target: `ablate plan sweeps/seed_ablation.yaml` lists 21 trials, all valid against verl's
real config, in under 10 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["sweeps/seed_ablation.yaml", "sweeps/stability_repeats.yaml"]


def _time_once(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ablate = shutil.which("ablate") or sys.executable
    base = [ablate] if ablate.endswith("ablate") else [sys.executable, "-c", "from orchestrator.cli import main; main()"]
    rows = []
    for spec in SPECS:
        for flags in ([], ["--no-validate"]):
            times = [_time_once([*base, "plan", spec, *flags]) for _ in range(args.repeats)]
            rows.append((spec, " ".join(flags) or "(validate)", statistics.median(times), min(times), max(times)))
    load = os.getloadavg()[0]
    lines = [
        "# `ablate plan` wall time",
        "",
        f"Command: `python benchmarks/plan.py --repeats {args.repeats}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"1-min load average at the end {load:.2f}. Wall time from process start to exit, {args.repeats} runs each.",
        "",
        "| spec | mode | median s | min s | max s |",
        "| --- | --- | ---: | ---: | ---: |",
        *[f"| `{s}` | {m} | {med:.2f} | {lo:.2f} | {hi:.2f} |" for s, m, med, lo, hi in rows],
        "",
        "`(validate)` composes verl's config for every trial and runs verl's own checks (importing verl costs about",
        "3 s of it: verl imports torch and tensordict); `--no-validate` only loads and expands the spec.",
    ]
    out = ROOT / "benchmarks" / "results" / "plan.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
