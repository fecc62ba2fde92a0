"""Calibration benchmark of the miniature GRPO trainer: how often each configuration collapses, speed, memory.

Runs each config x seeds through `python -m orchestrator.minigrpo` (two processes at a time, one torch thread each),
then writes `benchmarks/results/minigrpo.md` (the table and the command that produced it) and
`benchmarks/results/minigrpo_curves.json` (every run's per-step curves, for replaying collapse rules and pruners).

Collapse: the validation score falls below 50% of its best and stays there to the end; the collapse step is the
first evaluation from which that holds.

Before the calibration it measures speed alone: 200-step runs of the default recipe at n=2 and n=8 (seeds 1-3),
one process at a time at normal priority, wall time of the whole process (torch import and a cached warm start
included) and peak RSS. Run it on an otherwise idle machine.

    python benchmarks/minigrpo.py                       # speed alone, then all configs x 5 seeds, 250 steps
    python benchmarks/minigrpo.py --configs original --seeds 1 2 --steps 100 --speed-seeds
    python benchmarks/minigrpo.py --speed-only          # re-measure speed alone into the existing minigrpo.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VAL_KEY = "val-core/mini/reward/mean@1"
ACTOR = "actor_rollout_ref.actor."
CONFIGS: dict[str, list[str]] = {
    "original": [],
    "cosine": [ACTOR + "optim.lr_scheduler_type=cosine", ACTOR + "optim.lr_warmup_steps=20",
               ACTOR + "optim.min_lr_ratio=0.0"],
    "kl_0.01": [ACTOR + "use_kl_loss=true", ACTOR + "kl_loss_coef=0.01", ACTOR + "kl_loss_type=low_var_kl"],
    "kl_0.1": [ACTOR + "use_kl_loss=true", ACTOR + "kl_loss_coef=0.1", ACTOR + "kl_loss_type=low_var_kl"],
    "entropy_0.01": [ACTOR + "entropy_coeff=0.01"],
    "n8": ["actor_rollout_ref.rollout.n=8"],
}
CURVE_KEYS = {
    "score": "critic/score/mean",
    "entropy": "actor/entropy",
    "response_length": "response_length/mean",
    "clip_ratio": "response_length/clip_ratio",
    "grad_norm": "actor/grad_norm",
    "pg_loss": "actor/pg_loss",
    "kl_loss": "actor/kl_loss",
}


@dataclass
class RunResult:
    """One trainer run's outcome."""

    config: str
    seed: int
    returncode: int
    seconds: float
    max_rss_mb: float
    records: list[dict[str, Any]]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results; return the exit status."""
    args = _parse_args(argv)
    base = _base_overrides(args)
    print(f"warm start: {_prime_cache(base, args):.1f} s (cached for every run)", flush=True)
    speed = _speed_alone(base, args)
    if args.speed_only:
        _replace_speed_section(args.out / "minigrpo.md", speed)
        print(speed)
        return 0
    jobs = [(name, seed) for name in args.configs for seed in args.seeds]
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="minigrpo-bench-") as workdir, ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda job: _run(job[0], job[1], base, Path(workdir), args.nice), jobs):
            results.append(result)
            summary = _summarise_run(result)
            print(f"{result.config:>13} seed {result.seed}: rc={result.returncode} {result.seconds:5.1f} s "
                  f"best {summary['best']:.3f}@{summary['best_step']} final {summary['final']:.3f} "
                  f"collapse {summary['collapse_step']}", flush=True)
    table = _table(results, args.configs)
    command = "python benchmarks/minigrpo.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    _write(results, table, command.strip(), args, speed)
    print(speed)
    print(table)
    return 0 if all(r.returncode == 0 for r in results) else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--test-freq", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="trainer processes at a time")
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--override", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--speed-seeds", nargs="*", type=int, default=[1, 2, 3],
                        help="seeds of the 200-step speed runs made alone (none: skip them)")
    parser.add_argument("--speed-only", action="store_true",
                        help="measure speed alone only and rewrite that section of an existing minigrpo.md")
    return parser.parse_args(argv)


def _replace_speed_section(path: Path, speed: str) -> None:
    """Replace the table of the "Speed alone" section of `path`, keeping the rest of the file."""
    text = path.read_text()
    head, rest = text.split("## Speed alone\n\n", 1)
    intro, rest = rest.split("\n\n", 1)
    _, tail = rest.split("\n## Per run", 1)
    path.write_text(f"{head}## Speed alone\n\n{intro}\n\n{speed}\n\n## Per run{tail}")


SPEED_STEPS = 200


def _speed_alone(base: list[str], args: argparse.Namespace) -> str:
    """Time 200-step runs of the default recipe at n=2 and n=8, one at a time; return the markdown table."""
    lines = ["| rollout.n | seed | s (whole process) | peak RSS MB | final val | collapse step |",
             "| --- | --- | --- | --- | --- | --- |"]
    medians = []
    with tempfile.TemporaryDirectory(prefix="minigrpo-speed-") as workdir:
        for n in (2, 8):
            seconds = []
            for seed in args.speed_seeds:
                overrides = [*base, f"trainer.total_training_steps={SPEED_STEPS}", f"actor_rollout_ref.rollout.n={n}"]
                result = _run("original", seed, overrides, Path(workdir), nice=0, label=f"n{n}")
                summary = _summarise_run(result)
                seconds.append(result.seconds)
                lines.append(f"| {n} | {seed} | {result.seconds:.2f} | {result.max_rss_mb:.0f} | "
                             f"{summary['final']:.3f} | {summary['collapse_step'] or '-'} |")
                print(f"alone: n={n} seed {seed}: {result.seconds:.2f} s", flush=True)
            if seconds:
                medians.append(f"n={n}: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")
    return "\n".join(lines) + ("\n\n" + "; ".join(medians) + "." if medians else "")


def _base_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"trainer.total_training_steps={args.steps}",
        f"trainer.test_freq={args.test_freq}",
        "trainer.logger=[file]",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        *args.override,
    ]


def _seed_overrides(seed: int) -> list[str]:
    return [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}",
            f"{ACTOR}data_loader_seed={seed}", f"{ACTOR}fsdp_config.seed={seed}"]


def _prime_cache(base: list[str], args: argparse.Namespace) -> float:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        overrides = [*base, "trainer.total_training_steps=1", "trainer.val_before_train=false", "trainer.logger=[]"]
        subprocess.run(_argv(overrides, args.nice), cwd=workdir, check=True, env=_env(Path(workdir) / "prime.jsonl"))
    return time.perf_counter() - start


def _argv(overrides: list[str], nice: int) -> list[str]:
    return ["nice", "-n", str(nice), sys.executable, "-m", "orchestrator.minigrpo", *overrides]


def _env(metrics_path: Path) -> dict[str, str]:
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _run(config: str, seed: int, base: list[str], workdir: Path, nice: int, label: str = "") -> RunResult:
    name = f"{config}{label}_s{seed}"
    metrics_path = workdir / f"{name}.jsonl"
    overrides = [*base, *CONFIGS[config], *_seed_overrides(seed), f"trainer.experiment_name={name}"]
    start = time.perf_counter()
    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(_argv(overrides, nice), cwd=workdir, env=_env(metrics_path),
                                stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    records = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    return RunResult(config, seed, proc.returncode, seconds, usage.ru_maxrss / 1024.0, records)


def _val_curve(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(r["step"], r["data"][VAL_KEY]) for r in records if r["data"].get(VAL_KEY) is not None]


def collapse_step(curve: list[tuple[int, float]], fraction: float = 0.5) -> int | None:
    """Return the first step after the best from which the score stays below `fraction` x best, else None."""
    if not curve:
        return None
    best_index = max(range(len(curve)), key=lambda i: curve[i][1])
    threshold = fraction * curve[best_index][1]
    found = None
    for step, value in reversed(curve[best_index + 1 :]):
        if value >= threshold:
            break
        found = step
    return found


def _summarise_run(result: RunResult) -> dict[str, Any]:
    curve = _val_curve(result.records)
    if not curve:
        return {"best": float("nan"), "best_step": None, "final": float("nan"), "collapse_step": None}
    best_step, best = max(curve, key=lambda point: point[1])
    last = result.records[-1]["data"]
    return {
        "best": best,
        "best_step": best_step,
        "final": curve[-1][1],
        "collapse_step": collapse_step(curve),
        "final_entropy": last.get("actor/entropy"),
        "final_length": last.get("response_length/mean"),
    }


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _median(values: list[float]) -> str:
    return "-" if not values else f"{statistics.median(values):g}"


def _table(results: list[RunResult], configs: list[str]) -> str:
    header = ("| config | runs | best val (mean ± sd) | best step (median) | final val | collapsed | "
              "collapse step (median) | final entropy | final resp. length | s / run | peak RSS MB |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for config in configs:
        runs = sorted((r for r in results if r.config == config), key=lambda r: r.seed)
        sums = [_summarise_run(r) for r in runs]
        collapsed = [s["collapse_step"] for s in sums if s["collapse_step"] is not None]
        lines.append(
            f"| {config} | {len(runs)} | {_mean_sd([s['best'] for s in sums])} | "
            f"{_median([s['best_step'] for s in sums if s['best_step'] is not None])} | "
            f"{_mean_sd([s['final'] for s in sums])} | {len(collapsed)}/{len(runs)} | {_median(collapsed)} | "
            f"{_mean_sd([s['final_entropy'] for s in sums if s.get('final_entropy') is not None])} | "
            f"{_mean_sd([s['final_length'] for s in sums if s.get('final_length') is not None])} | "
            f"{_mean_sd([r.seconds for r in runs])} | {max(r.max_rss_mb for r in runs):.0f} |"
        )
    return "\n".join(lines)


def _curves(result: RunResult) -> dict[str, Any]:
    train = [r for r in result.records if r["step"] > 0 and "critic/score/mean" in r["data"]]
    curves: dict[str, Any] = {"step": [r["step"] for r in train]}
    for short, key in CURVE_KEYS.items():
        values = [r["data"].get(key) for r in train]
        if any(v is not None for v in values):
            curves[short] = [None if v is None else round(v, 4) for v in values]
    val = _val_curve(result.records)
    curves["val_step"] = [s for s, _ in val]
    curves["val"] = [round(v, 4) for _, v in val]
    return curves


def _write(results: list[RunResult], table: str, command: str, args: argparse.Namespace, speed: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    per_run = "\n".join(
        f"| {r.config} | {r.seed} | {s['best']:.3f} @ {s['best_step']} | {s['final']:.3f} | "
        f"{s['collapse_step'] if s['collapse_step'] is not None else '-'} | {r.seconds:.1f} | {r.max_rss_mb:.0f} |"
        for r in sorted(results, key=lambda r: (args.configs.index(r.config), r.seed))
        for s in [_summarise_run(r)]
    )
    text = (
        "# Miniature GRPO trainer: calibration\n\n"
        f"Command: `{command}` (from the repository root; {args.jobs} runs at a time, nice {args.nice}, one torch "
        f"thread per run, {os.cpu_count()} CPU cores).\n\n"
        f"{args.steps} steps, validation every {args.test_freq} steps on 512 held-out prompts sampled at T=1 with a "
        "fixed seed. Collapse: the validation score falls below 50% of its best and stays there to the end "
        "(collapse step: the first evaluation from which that holds). Seconds per run are wall time of the whole "
        "process (torch import and a cached warm start included) while another run shares the machine.\n\n"
        f"Overrides per config: {json.dumps(CONFIGS)}; each seed s sets data.seed, rollout.seed, "
        "actor.data_loader_seed and actor.fsdp_config.seed to s.\n\n"
        f"{table}\n\n## Speed alone\n\n{SPEED_STEPS} steps of the default recipe (the original config) at "
        "rollout.n 2 and 8, one process at a time on the otherwise idle machine, normal priority, one torch thread; "
        "seconds are the whole process's wall time (torch import, config, the cached warm start, 21 validations of "
        f"512 prompts included).\n\n{speed}\n\n## Per run\n\n"
        "| config | seed | best val @ step | final val | collapse step | s | peak RSS MB |\n"
        f"| --- | --- | --- | --- | --- | --- | --- |\n{per_run}\n"
    )
    (args.out / "minigrpo.md").write_text(text)
    curves = {f"{r.config}_s{r.seed}": {"config": r.config, "seed": r.seed, "overrides": CONFIGS[r.config],
                                         **_curves(r)} for r in results}
    (args.out / "minigrpo_curves.json").write_text(json.dumps(curves, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
