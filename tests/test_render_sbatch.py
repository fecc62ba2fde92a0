"""The batch script of a Slurm trial, read without a Slurm: `render_sbatch` against committed golden files.

The golden files hold the whole script with three placeholders: `{workdir}` (the trial's folder), `{templates}`
(the repository's `slurm/` folder) and `{python}` (the interpreter). A change to the script's text fails here; if
the change is meant, regenerate them deliberately with `python tests/test_render_sbatch.py` and review the diff.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.launchers import Launcher, LocalLauncher, make_launcher
from orchestrator.launchers.slurm import SlurmLauncher, SlurmOptions, render_sbatch
from orchestrator.trainers import Command

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
TEMPLATES = ROOT / "slurm"
WORKDIR = Path("/scratch/runs/demo/trials/lr=const_kl=0_s1")
PYTHON = "/opt/python/bin/python3"
ARGV = (
    "python3",
    "-m",
    "verl.trainer.main_ppo",
    "data.train_files=/data/train set.parquet",
    "trainer.experiment_name=it's $HOME; `id` \"x\"",
    "actor_rollout_ref.actor.optim.lr=1e-06",
)
CASES = {
    "one_node": SlurmOptions(
        time="02:00:00", nodes=1, gpus_per_node=4, cpus=7.5, partition="gpu", account="rl", constraint="h100",
        extra_sbatch=("--mem=200G",), job_prefix="ablate-demo",
    ),
    "two_nodes": SlurmOptions(time="1-00:00:00", nodes=2, gpus_per_node=8, cpus=32, partition="big", job_prefix="ablate-demo"),
}


def _render(options: SlurmOptions) -> str:
    return render_sbatch(options, Command(ARGV), WORKDIR, attempt=2, templates=TEMPLATES, python=PYTHON)


def _golden(name: str) -> str:
    text = (GOLDEN / f"trial_{name}.sbatch").read_text()
    return text.replace("{workdir}", str(WORKDIR)).replace("{templates}", str(TEMPLATES)).replace("{python}", PYTHON)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_batch_script_is_the_golden_one(name: str) -> None:
    assert _render(CASES[name]) == _golden(name)


def test_the_trainer_argv_survives_the_script_word_for_word() -> None:
    text = _render(CASES["one_node"])
    (line,) = [line for line in text.splitlines() if line.startswith("TRAINER=( ")]
    # bash itself reads the array, as the job's shell does.
    words = subprocess.run(["bash", "-c", f'{line}\nprintf "%s\\0" "${{TRAINER[@]}}"'], capture_output=True, check=True).stdout
    assert tuple(words.decode().split("\0")[:-1]) == ARGV


def test_only_a_multi_node_job_starts_a_ray_cluster() -> None:
    assert "start_ray_cluster" in _render(CASES["two_nodes"]) and f"source {TEMPLATES}/ray_cluster.sh" in _render(CASES["two_nodes"])
    assert "ray_cluster" not in _render(CASES["one_node"])


def test_both_launchers_speak_the_whole_protocol() -> None:
    local = make_launcher(None, grace_s=1.0)
    slurm = make_launcher(CASES["one_node"], state_poll_s=1.0)
    assert isinstance(local, LocalLauncher) and isinstance(slurm, SlurmLauncher)
    for launcher in (local, slurm):
        assert isinstance(launcher, Launcher)
        for method in ("start", "poll", "wait", "stop", "stderr_tail", "log_paths", "describe", "release"):
            assert callable(getattr(launcher, method))
    assert (local.detached, slurm.detached) == (False, True)


if __name__ == "__main__":
    for case, options in CASES.items():
        rendered = render_sbatch(options, Command(ARGV), WORKDIR, attempt=2, templates=TEMPLATES, python=PYTHON)
        golden = rendered.replace(str(WORKDIR), "{workdir}").replace(str(TEMPLATES), "{templates}").replace(PYTHON, "{python}")
        (GOLDEN / f"trial_{case}.sbatch").write_text(golden)
        print(f"wrote {GOLDEN / f'trial_{case}.sbatch'}", file=sys.stderr)
