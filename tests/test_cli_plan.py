"""`ablate plan`: exit codes, the table, --json, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _misspelt_spec(tmp_path: Path) -> Path:
    text = (ROOT / "sweeps" / "stability_repeats.yaml").read_text()
    text = text.replace("base: ../configs/verl/qwen3_4b_grpo.yaml", f"base: {ROOT}/configs/verl/qwen3_4b_grpo.yaml")
    text = text.replace("seeds: 8", "seeds: 2")
    text = text.replace("  base:", "  overrides: {actor_rollout_ref.actor.optim.lrr: 1.0e-6}\n  base:")
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    return path


def test_plan_lists_the_seed_ablation_all_valid() -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "sweeps" / "seed_ablation.yaml")])
    assert result.exit_code == 0, result.output
    assert "qwen3-4b-collapse-ablation: 21 trials (one_at_a_time, 3 seed(s) each)" in result.stdout
    assert "21 trials = 7 points x 3 seeds; 8 GPU(s) per trial; about 2,352 GPU-hours at 14 h per trial" in result.stdout
    assert "verl config check: all valid" in result.stdout
    assert result.stdout.count("valid") >= 21


def test_plan_says_where_the_trials_run(tmp_path: Path) -> None:
    text = (ROOT / "sweeps" / "demo.yaml").read_text()
    assert "\ncluster:" not in text
    local = runner.invoke(app, ["plan", str(ROOT / "sweeps" / "demo.yaml"), "--no-validate"])
    assert "runs on: a Ray cluster (`cluster: local`)" in local.stdout
    slurm = tmp_path / "demo-slurm.yaml"
    slurm.write_text(
        text.replace("base: ../configs/", f"base: {ROOT}/configs/")
        + '\ncluster: {slurm: {partition: gpu, time: "02:00:00", max_jobs: 4, extra_sbatch: ["--mem=8G"]}}\n'
    )
    result = runner.invoke(app, ["plan", str(slurm), "--no-validate"])
    assert result.exit_code == 0, result.output
    assert (
        "runs on: Slurm, one sbatch job per trial (--time=02:00:00 --nodes=1 --partition=gpu --mem=8G; "
        "at most 4 submitted at once; requeue on)"
    ) in result.stdout


def test_plan_json_lists_id_name_factors_seed_argv() -> None:
    result = runner.invoke(app, ["plan", str(ROOT / "sweeps" / "seed_ablation.yaml"), "--json", "--out", "/x"])
    assert result.exit_code == 0, result.output
    trials = json.loads(result.stdout)
    assert len(trials) == 21
    first = trials[0]
    assert set(first) == {"id", "name", "factors", "seed", "argv", "errors"}
    assert first["name"] == "lr=const_kl=0_ent=0_n=2_s1"
    assert first["factors"]["kl"] == {"use_kl_loss": False, "type": "low_var_kl"}
    assert first["argv"][1:3] == ["-m", "verl.trainer.main_ppo"]
    assert "trainer.default_local_dir=/x/trials/lr=const_kl=0_ent=0_n=2_s1/checkpoints" in " ".join(first["argv"]).replace("'", "")
    assert all(t["errors"] == [] for t in trials)


def test_plan_refuses_a_misspelt_override_naming_trial_and_key(tmp_path: Path) -> None:
    path = _misspelt_spec(tmp_path)
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: {path}: trial lr=const_s{seed} ({tid}): `actor_rollout_ref.actor.optim.lrr`: not a key of verl's config "
        "(to add a new key, prefix it with +)"
        for seed, tid in zip((1, 2), _ids(path))
    ]
    assert "Traceback" not in result.output


def _ids(path: Path) -> list[str]:
    from orchestrator.design import expand
    from orchestrator.spec import load_spec

    return [t.id for t in expand(load_spec(path)).trials]


def test_plan_bad_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\ntrainer: {backend: mini}\nfactors: {kl: [0, {use_kl_loss: true, coef: -0.01}]}\n"
        "budget: {max_steps: 10, eval_every: 5, save_every: 5}\n"
    )
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: factors.kl[1].coef: must be > 0 (got -0.01)"
    assert result.stdout == ""


def test_plan_missing_file_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'none.yaml'}: no such spec file"


def test_plan_console_script_exit_codes_without_traceback(tmp_path: Path) -> None:
    """The installed `ablate` entry point, as a user runs it."""
    path = _misspelt_spec(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli import main; main()", "plan", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "`actor_rollout_ref.actor.optim.lrr`: not a key of verl's config" in proc.stderr


def test_cli_help_shows_every_command_and_its_defaults() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("plan", "run", "status", "report", "analyze"):
        assert command in result.stdout
    # Defaults are written in parentheses: square brackets would be eaten as rich markup.
    run_help = " ".join(runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "(default: runs/<name>)" in run_help
    assert "(default: start a local one)" in run_help


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ("{eval_sizes: {mini: 0}}", "error: {path}: objective.eval_sizes: the size of `mini` must be at least 1 problem (got 0)"),
        ("{eval_sizes: {aime24: 30}}", "error: objective.eval_sizes: the mini trainer never logs the data source `aime24` (it logs: mini)"),
    ],
    ids=["size-0", "source-never-logged"],
)
def test_plan_refuses_bad_eval_sizes(tmp_path: Path, objective: str, message: str) -> None:
    path = tmp_path / "sizes.yaml"
    path.write_text(
        f"name: x\ntrainer: {{backend: mini}}\nfactors: {{kl: [0, 0.1]}}\nobjective: {objective}\n"
        "budget: {max_steps: 10, eval_every: 5, save_every: 5}\n"
    )
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [message.format(path=path)], result.stderr
    assert "Traceback" not in result.output


def test_plan_states_the_objective_and_its_evaluation_set(tmp_path: Path) -> None:
    path = tmp_path / "sizes.yaml"
    path.write_text(
        "name: x\ntrainer: {backend: mini}\nfactors: {kl: [0, 0.1]}\nobjective: {eval_sizes: {mini: 512}}\n"
        "budget: {max_steps: 10, eval_every: 5, save_every: 5}\n"
    )
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "objective: auto (the val-core/<source>/<var>/mean@N of the largest evaluation set the trainer logs); evaluation sets: mini 512 problems, max" in result.stdout
