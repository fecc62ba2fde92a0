"""Rescue branches against a from-scratch ablation of the same remedies over the same seeds, on the miniature.

Usage: nice -n 5 python benchmarks/rescue.py   -> benchmarks/results/rescue.md

Runs, with `ablate run` on a local Ray cluster (one shared warm-start cache):
- the rescue ablation, `sweeps/rescue_demo.yaml` (the original settings x 5 seeds; each collapsed seed branched with
  KL 0.1 and with n=8), once from the best checkpoint and once from the last healthy one (the demo's own setting);
- the from-scratch ablation: the original settings, KL 0.1 and n=8, one factor at a time, over the same 5 seeds and
  budget, with the same collapse rules.
Reports per remedy the rescue rate (Wilson 95%) and the from-scratch collapse rate, their best scores, and the
trainer steps each ablation spent to answer "does the remedy prevent the collapse?" (the branches' steps against
the remedy trials' steps; the original settings' own trials, which both ablations run, are counted apart).
Goal: the rescue ablation at most half the from-scratch steps, reaching the same conclusion.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
REMEDIES = ("kl=0.1", "n=8")


def _run(spec: Path, out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*ABLATE, "run", str(spec), "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ablate run {spec} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _trials(out: Path) -> list[Any]:
    from orchestrator.store import SQLiteStore

    with SQLiteStore(out / "sweep.db") as store:
        return store.list_trials(store.list_sweeps()[0].id)


def _specs(work: Path) -> dict[str, Path]:
    demo = (ROOT / "sweeps" / "rescue_demo.yaml").read_text().replace("../configs/", f"{ROOT}/configs/")
    specs = {}
    for how in ("best", "last_healthy"):
        specs[f"rescue ({how})"] = work / f"rescue_{how}.yaml"
        text = re.sub(r"\bfrom: \w+", f"from: {how}", demo).replace("name: rescue_demo", f"name: rescue_{how}")
        specs[f"rescue ({how})"].write_text(text)
    scratch = demo.split("factors:")[0].replace("name: rescue_demo", "name: from_scratch") + (
        "factors:\n  kl: [0, 0.1]\n  rollout_n: [2, 8]\n"
        "design: {type: one_at_a_time, baseline: {kl: 0, rollout_n: 2}}\n"
        "seeds: 5\nbudget: {max_steps: 200, eval_every: 10, save_every: 10}\n"
        "objective: {metric: val-core/mini/reward/mean@1, mode: max}\npruning: {collapse: {}}\nresources: {cpus: 1}\n"
    )
    specs["from scratch"] = work / "from_scratch.yaml"
    specs["from scratch"].write_text(scratch)
    return specs


def _rescue_rows(trials: list[Any]) -> dict[str, dict[str, Any]]:
    parents = {t.id: t for t in trials if t.parent is None}
    rows: dict[str, dict[str, Any]] = {}
    for t in trials:
        if t.parent is None:
            continue
        row = rows.setdefault(t.remedy, {"n": 0, "ok": 0, "steps": 0, "gain": [], "best": []})
        row["n"] += 1
        row["ok"] += t.status == "completed"
        row["steps"] += (t.last_step or t.from_step) - t.from_step
        row["best"].append(t.best_score)
        row["gain"].append(t.best_score - parents[t.parent].best_score)
    return rows


def _scratch_rows(trials: list[Any]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for t in trials:
        label = "original"
        if t.overrides.get("actor_rollout_ref.actor.use_kl_loss") is True:
            label = "kl=0.1"
        elif t.overrides.get("actor_rollout_ref.rollout.n") == 8:
            label = "n=8"
        row = rows.setdefault(label, {"n": 0, "collapsed": 0, "steps": 0, "best": []})
        row["n"] += 1
        row["collapsed"] += bool(t.stop_reason and t.stop_reason.is_collapse)
        row["steps"] += t.last_step or 0
        row["best"].append(t.best_score)
    return rows


def _rate(k: int, n: int) -> str:
    from orchestrator.report import wilson_ci

    ci = wilson_ci(k, n)
    return f"{k}/{n} = {k / n:.0%} [{ci.low:.0%}, {ci.high:.0%}]"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ablate-rescue-"))
    env = {**os.environ, "ABLATE_CACHE_DIR": str(work / "cache")}
    specs = _specs(work)
    walls = {name: _run(spec, work / name.replace(" ", "_"), env) for name, spec in specs.items()}
    scratch_trials = _trials(work / "from_scratch")
    scratch = _scratch_rows(scratch_trials)
    lines = [
        "# Rescue branches against a from-scratch ablation (miniature, 5 seeds)",
        "",
        "Command: `nice -n 5 python benchmarks/rescue.py`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "The original settings (constant LR, no KL, no entropy bonus, n=2) x 5 seeds, 200 steps, evaluation and",
        "checkpoint every 10, default collapse rules. Rescue: each collapsed seed branched with KL 0.1 and with n=8",
        "(`sweeps/rescue_demo.yaml`). From scratch: the original settings, KL 0.1 and n=8, one at a time, same seeds.",
        "A branch is rescued when it reaches step 200 without collapsing again. Steps are trainer steps.",
        "",
        "| ablation | wall time | trials | trainer steps, original settings | trainer steps, remedies |",
        "| --- | --- | --- | --- | --- |",
    ]
    summaries = {}
    for name in specs:
        trials = _trials(work / name.replace(" ", "_"))
        own = [t for t in trials if t.parent is None]
        if name == "from scratch":
            base = scratch["original"]["steps"]
            remedy_steps = sum(r["steps"] for k, r in scratch.items() if k != "original")
        else:
            base = sum(t.last_step or 0 for t in own)
            summaries[name] = _rescue_rows(trials)
            remedy_steps = sum(r["steps"] for r in summaries[name].values())
        lines.append(f"| {name} | {walls[name]:.0f} s | {len(trials)} | {base} | {remedy_steps} |")
    lines += [
        "",
        "| remedy | from scratch: collapse rate [95% Wilson] | from scratch: mean best | from scratch: steps | "
        + " | ".join(f"{name}: rescued [95% Wilson] | {name}: mean best (gain over parent) | {name}: steps" for name in summaries)
        + " |",
        "| --- | --- | --- | --- | " + " | ".join("--- | --- | ---" for _ in summaries) + " |",
    ]
    for remedy in REMEDIES:
        s = scratch[remedy]
        cells = [_rate(s["collapsed"], s["n"]), f"{sum(s['best']) / s['n']:.3f}", str(s["steps"])]
        for rows in summaries.values():
            r = rows.get(remedy)
            if r is None:
                cells += ["no collapse to rescue", "-", "0"]
                continue
            gain = sum(r["gain"]) / r["n"]
            cells += [_rate(r["ok"], r["n"]), f"{sum(r['best']) / r['n']:.3f} ({gain:+.3f})", f"{r['steps']} ({r['steps'] / s['steps']:.0%})"]
        lines.append(f"| {remedy} | " + " | ".join(cells) + " |")
    o = scratch["original"]
    lines += ["", f"The original settings from scratch: collapsed {_rate(o['collapsed'], o['n'])}, mean best {sum(o['best']) / o['n']:.3f}.", ""]
    out = ROOT / "benchmarks" / "results" / "rescue.md"
    out.write_text("\n".join(lines))  # the Reading section below the tables is written by hand
    print(out.read_text())


if __name__ == "__main__":
    main()
