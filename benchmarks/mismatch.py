"""Train-inference mismatch on the miniature: does the sampler's precision, or verl's rollout correction, matter?

Runs the miniature's original (collapsing) settings with the sampler's weights in bf16, fp16 and fp32, and with
verl's token- and sequence-level importance sampling (TIS, threshold 2) on the bf16 sampler, each over 10 seeds,
through `python -m orchestrator.minigrpo` (the helpers of benchmarks/minigrpo.py: same budget, seeds and collapse
definition). Writes `benchmarks/results/mismatch.md` (per level: collapse rate with its Wilson interval, mean best
score, steps to collapse; the mismatch warnings' lead over the collapse and their false alarms) and
`benchmarks/results/mismatch_curves.json` (every run's per-step curves, mismatch metrics included).

    nice -n 5 python benchmarks/mismatch.py                 # 5 levels x 10 seeds, 250 steps
    python benchmarks/mismatch.py --from-curves             # rewrite the table from the saved curves
    python benchmarks/mismatch.py --levels bf16 --seeds 1 --steps 50
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minigrpo as calib  # noqa: E402  (benchmarks/minigrpo.py: budget, seeds, runner, collapse definition)

from orchestrator.history import StepMetrics  # noqa: E402
from orchestrator.report import wilson_ci  # noqa: E402

CORR = "algorithm.rollout_correction."
DTYPE = "actor_rollout_ref.rollout.dtype="
LEVELS: dict[str, list[str]] = {
    "bf16": [DTYPE + "bfloat16"],
    "fp16": [DTYPE + "float16"],
    "fp32": [DTYPE + "float32"],
    "bf16+token_is": [DTYPE + "bfloat16", CORR + "rollout_is=token", CORR + "rollout_is_threshold=2.0"],
    "bf16+seq_is": [DTYPE + "bfloat16", CORR + "rollout_is=sequence", CORR + "rollout_is_threshold=2.0"],
}
CURVE_KEYS = {
    **calib.CURVE_KEYS,
    "probs_diff_max": "training/rollout_probs_diff_max",
    "probs_diff_mean": "training/rollout_probs_diff_mean",
    "mismatch_kl": "rollout_corr/kl",
    "k3_kl": "rollout_corr/k3_kl",
    "chi2_token": "rollout_corr/chi2_token",
    "ess": "rollout_corr/rollout_is_eff_sample_size",
    "is_fraction_high": "rollout_corr/rollout_is_ratio_fraction_high",
}
CURVES_FILE = "mismatch_curves.json"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or reread its curves) and write its results; return the exit status."""
    args = _parse_args(argv)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--from-curves"]
    command = "python benchmarks/mismatch.py " + " ".join(shlex.quote(a) for a in given)
    if args.from_curves:
        curves = json.loads((args.out / CURVES_FILE).read_text())
        seconds = None
    else:
        curves, seconds = _run_all(args)
        (args.out / CURVES_FILE).write_text(json.dumps(curves, separators=(",", ":")))
    text = _report(curves, args, command.strip(), seconds)
    (args.out / "mismatch.md").write_text(text)
    print(text)
    return 0 if all(c["returncode"] == 0 for c in curves.values()) else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--test-freq", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="trainer processes at a time")
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--out", type=Path, default=calib.RESULTS)
    parser.add_argument("--override", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--from-curves", action="store_true", help=f"rewrite the table from {CURVES_FILE}")
    return parser.parse_args(argv)


def _run_all(args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    base = calib._base_overrides(args)
    print(f"warm start: {calib._prime_cache(base, args):.1f} s (cached for every run)", flush=True)
    jobs = [(level, seed) for level in args.levels for seed in args.seeds]
    curves: dict[str, Any] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mismatch-bench-") as workdir, ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda job: _run(job[0], job[1], base, Path(workdir), args.nice), jobs):
            summary = calib._summarise_run(result)
            print(f"{result.config:>14} seed {result.seed:>2}: rc={result.returncode} {result.seconds:5.1f} s "
                  f"best {summary['best']:.3f}@{summary['best_step']} final {summary['final']:.3f} "
                  f"collapse {summary['collapse_step']}", flush=True)
            curves[f"{result.config}_s{result.seed}"] = {
                "config": result.config, "seed": result.seed, "overrides": LEVELS[result.config],
                "returncode": result.returncode, "seconds": round(result.seconds, 1), **_curves(result),
            }
    return curves, time.perf_counter() - start


def _run(level: str, seed: int, base: list[str], workdir: Path, nice: int) -> calib.RunResult:
    saved = calib.CONFIGS.get(level)
    calib.CONFIGS[level] = LEVELS[level]  # the calibration runner looks its overrides up by name
    try:
        return calib._run(level, seed, base, workdir, nice)
    finally:
        if saved is None:
            calib.CONFIGS.pop(level, None)


def _curves(result: calib.RunResult) -> dict[str, Any]:
    train = [r for r in result.records if r["step"] > 0 and "critic/score/mean" in r["data"]]
    curves: dict[str, Any] = {"step": [r["step"] for r in train]}
    for short, key in CURVE_KEYS.items():
        values = [r["data"].get(key) for r in train]
        if any(v is not None for v in values):
            curves[short] = [None if v is None else float(f"{v:.4g}") for v in values]
    val = calib._val_curve(result.records)
    curves["val_step"] = [s for s, _ in val]
    curves["val"] = [round(v, 4) for _, v in val]
    return curves


def _history(curve: dict[str, Any]) -> list[StepMetrics]:
    """Return a run's curves as the history the collapse rules and signs read (val merged into its step)."""
    val = dict(zip(curve["val_step"], curve["val"], strict=True))
    points = []
    steps = sorted(set(curve["step"]) | set(val))
    index = {step: i for i, step in enumerate(curve["step"])}
    for step in steps:
        metrics: dict[str, float] = {}
        if step in index:
            for short, key in CURVE_KEYS.items():
                value = curve.get(short, [None] * len(curve["step"]))[index[step]]
                if value is not None:
                    metrics[key] = value
        if step in val:
            metrics[calib.VAL_KEY] = val[step]
        points.append(StepMetrics(step, metrics))
    return points


def _level_rows(curves: dict[str, Any], levels: list[str]) -> list[str]:
    rows = []
    for level in levels:
        runs = [c for c in curves.values() if c["config"] == level]
        if not runs:
            continue
        sums = [_summary(c) for c in runs]
        collapsed = sorted(s["collapse_step"] for s in sums if s["collapse_step"] is not None)
        rate = wilson_ci(len(collapsed), len(runs))
        best = [s["best"] for s in sums]
        to_collapse = (f"{statistics.median(collapsed):g} ({collapsed[0]}-{collapsed[-1]})" if collapsed else "-")
        diff = [statistics.mean(v for v in c["probs_diff_max"][:20] if v is not None) for c in runs
                if c.get("probs_diff_max")]
        ess = [min(v for v in c["ess"] if v is not None) for c in runs if c.get("ess")]
        rows.append(
            f"| {level} | {len(runs)} | {len(collapsed)}/{len(runs)} | {rate.estimate:.2f} "
            f"[{rate.low:.2f}, {rate.high:.2f}] | {statistics.mean(best):.3f} ± "
            f"{statistics.stdev(best) if len(best) > 1 else 0.0:.3f} | {to_collapse} | "
            f"{statistics.mean(s['final'] for s in sums):.2f} | "
            f"{statistics.mean(diff):.4f} | " + (f"{statistics.median(ess):.3f}" if ess else "-") + " |"
        )
    return rows


def _summary(curve: dict[str, Any]) -> dict[str, Any]:
    val = list(zip(curve["val_step"], curve["val"], strict=True))
    best_step, best = max(val, key=lambda point: point[1])
    return {"best": best, "best_step": best_step, "final": val[-1][1], "collapse_step": calib.collapse_step(val)}


def _warning_rows(curves: dict[str, Any]) -> list[str]:
    """Per mismatch sign: runs warned before the collapse (median lead in steps), after it, and on healthy runs."""
    from orchestrator.collapse import MISMATCH_SIGN_NAMES, build_signs

    per_sign: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for curve in curves.values():
        collapse = _summary(curve)["collapse_step"]
        history = _history(curve)
        for sign in (s for s in build_signs() if s.name in MISMATCH_SIGN_NAMES):
            warning = sign.warn(history)
            if warning is None:
                continue
            entry = per_sign.setdefault((sign.name, curve["config"]), {"lead": [], "late": [], "healthy": []})
            if collapse is None:
                entry["healthy"].append(curve["config"])
            elif warning.step <= collapse:
                entry["lead"].append(collapse - warning.step)
            else:
                entry["late"].append(warning.step - collapse)
    rows = []
    for (sign, level), entry in sorted(per_sign.items(), key=lambda item: (item[0][0], list(LEVELS).index(item[0][1]))):
        runs = [c for c in curves.values() if c["config"] == level]
        n_collapsed = sum(1 for c in runs if _summary(c)["collapse_step"] is not None)
        lead = f"{statistics.median(entry['lead']):g}" if entry["lead"] else "-"
        rows.append(f"| {sign} | {level} | {len(entry['lead'])} of {n_collapsed} | {lead} | {len(entry['late'])} | "
                    f"{len(entry['healthy'])} of {len(runs) - n_collapsed} |")
    return rows or ["| (no mismatch warning fired) | | | | | |"]


def _report(curves: dict[str, Any], args: argparse.Namespace, command: str, seconds: float | None) -> str:
    levels = [lv for lv in LEVELS if any(c["config"] == lv for c in curves.values())]
    per_run = "\n".join(
        f"| {c['config']} | {c['seed']} | {s['best']:.3f} @ {s['best_step']} | {s['final']:.3f} | "
        f"{s['collapse_step'] if s['collapse_step'] is not None else '-'} | {c['seconds']} |"
        for c in sorted(curves.values(), key=lambda c: (levels.index(c["config"]), c["seed"]))
        for s in [_summary(c)]
    )
    wall = f" Wall time {seconds / 60:.0f} min." if seconds else ""
    return (
        "# Train-inference mismatch on the miniature: sampler precision and rollout correction\n\n"
        f"Command: `nice -n 5 {command}` (from the repository root; {args.jobs} runs at a time, one torch thread "
        f"per run, on a 2-core machine shared with other work).{wall} The runs' curves are in {CURVES_FILE}; "
        "`python benchmarks/mismatch.py --from-curves` rewrites this file from them.\n\n"
        "The miniature's original settings (constant LR 2e-3, no KL, no entropy bonus, n=2; "
        "`configs/mini/original.yaml`), 250 steps, validation every 10 steps on 512 held-out prompts (sampled "
        "from the rollout copy, as in benchmarks/results/minigrpo.md). Each seed s sets data.seed, rollout.seed, "
        "actor.data_loader_seed and actor.fsdp_config.seed to s. Collapse: the validation score falls below 50% "
        "of its best and stays there to the end; the step is the first evaluation from which that holds.\n\n"
        f"Overrides per level: {json.dumps(LEVELS)}.\n\n"
        "| level | runs | collapsed | collapse rate [95% Wilson] | best val (mean ± sd) | steps to collapse "
        "(median, range) | final val (mean) | probability gap, max per step (mean of steps 1-20) | "
        "IS effective sample size (median of each run's minimum) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(_level_rows(curves, levels))
        + "\n\n## Mismatch warnings (orchestrator.collapse._signs: is_ess_low, probs_gap_rise): lead over the "
        "collapse\n\nA sign and level absent from this table never warned.\n\n"
        "| sign | level | warned at or before the collapse | median lead (steps) | warned after the collapse | "
        "warned on runs that never collapsed |\n| --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(_warning_rows(curves))
        + "\n\n## Per run\n\n| level | seed | best val @ step | final val | collapse step | s |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + per_run + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
