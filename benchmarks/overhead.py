"""Orchestration overhead: the same N short trials through `ablate run` vs a bare Ray Tune script.

Usage: python benchmarks/overhead.py [--trials 6] [--steps 30 100] [--repeats 3]  -> benchmarks/results/overhead.md

Both sides run the same trainer commands (the miniature trainer, argv from ablate's own builder) on a fresh local
Ray cluster, one CPU per trial. The bare script only launches each subprocess from a Tune function trainable and
waits for it (worker processes reused across trials, as ablate does); `ablate run` also validates the trials, tails every metrics file into the SQLite store, runs the
collapse rules on every step, keeps the best checkpoints and reports to Tune. Wall time is from process start to
exit, Ray start-up included; the two sides alternate so that background load hits both alike.
Target: ratio <= 1.10 (what ablate adds on top of Tune costs at most a tenth of the wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = textwrap.dedent(
    """\
    import json, os, subprocess, sys
    import ray
    from ray import tune

    commands = json.load(open(sys.argv[1]))

    def launch(config):
        command = commands[config["i"]]
        env = {**os.environ, **command["env"]}
        os.makedirs(command["workdir"], exist_ok=True)
        with open(os.path.join(command["workdir"], "bare.log"), "w") as log:
            code = subprocess.call(command["argv"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=command["workdir"])
        if code != 0:
            raise RuntimeError(f"exit {code}")

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(launch, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(len(commands))))},
        tune_config=tune.TuneConfig(reuse_actors=True),  # as ablate does
        run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    """
)


def _spec(path: Path, n_trials: int, steps: int) -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            name: overhead
            trainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml}}
            factors:
              entropy_coeff: [0]
            seeds: {n_trials}
            budget: {{max_steps: {steps}, eval_every: 10, save_every: 10}}
            objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
            pruning: {{collapse: {{}}}}
            resources: {{cpus: 1}}
            """
        )
    )


def _commands(spec_path: Path, sweep_dir: Path) -> list[dict[str, object]]:
    from orchestrator.design import expand
    from orchestrator.spec import load_spec
    from orchestrator.sweepdir import SweepDir
    from orchestrator.trainers import RunContext, get_trainer

    spec = load_spec(spec_path)
    trainer = get_trainer("mini")
    out = []
    for trial in expand(spec).trials:
        ctx = RunContext(SweepDir(sweep_dir).trial(trial.name), spec.name)
        command = trainer.command(trial, ctx)
        out.append({"argv": list(command.argv), "env": command.env, "workdir": str(ctx.workdir)})
    return out


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ablate-overhead-"))
    env = {**os.environ, "ABLATE_CACHE_DIR": str(work / "cache")}
    rows = []
    for steps in args.steps:
        spec = work / f"overhead-{steps}.yaml"
        _spec(spec, args.trials, steps)
        # Warm the miniature's warm-start cache once, so that neither side pays for it.
        warm = _commands(spec, work / "warm")[0]
        subprocess.run(warm["argv"], env={**env, **warm["env"]}, check=True, capture_output=True)  # type: ignore[arg-type]
        ablate_times, bare_times = [], []
        for repeat in range(args.repeats):
            sweep_dir = work / f"ablate-{steps}-{repeat}"
            ablate_times.append(
                _timed([sys.executable, "-c", "from orchestrator.cli import main; main()", "run", str(spec), "--out", str(sweep_dir)], env)
            )
            bare_dir = work / f"bare-{steps}-{repeat}"
            commands = work / f"commands-{steps}-{repeat}.json"
            commands.write_text(json.dumps(_commands(spec, bare_dir)))
            script = work / "bare.py"
            script.write_text(BARE)
            bare_times.append(_timed([sys.executable, str(script), str(commands), str(bare_dir / "tune")], env))
        ratio = statistics.median(ablate_times) / statistics.median(bare_times)
        rows.append(
            f"| {steps} | {', '.join(f'{t:.1f}' for t in ablate_times)} | {', '.join(f'{t:.1f}' for t in bare_times)} "
            f"| {statistics.median(ablate_times):.1f} | {statistics.median(bare_times):.1f} | **{ratio:.3f}** |"
        )
    lines = [
        "# Orchestration overhead: `ablate run` vs a bare Ray Tune script",
        "",
        f"Command: `python benchmarks/overhead.py --trials {args.trials} --steps {' '.join(map(str, args.steps))} "
        f"--repeats {args.repeats}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. {args.trials} "
        "miniature trials per run (eval and checkpoint every 10 steps), one CPU each, on a fresh local Ray cluster per "
        "run; wall time from process start to exit, the two sides alternating. Target: ratio <= 1.10.",
        "",
        "| steps per trial | `ablate run` runs (s) | bare Tune runs (s) | ablate median s | bare median s | ratio |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
        *rows,
    ]
    out = ROOT / "benchmarks" / "results" / "overhead.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
