"""Train-inference mismatch as an ablation axis: the spec's shorthands, the shipped sweeps, the mismatch warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.collapse import MISMATCH_SIGN_NAMES, build_signs, collect_warnings
from orchestrator.design import expand
from orchestrator.history import StepMetrics
from orchestrator.errors import SpecError
from orchestrator.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
C = "algorithm.rollout_correction."


def _spec(tmp_path: Path, factors: str, backend: str = "mini") -> Path:
    base = "../configs/mini/original.yaml" if backend == "mini" else "../configs/verl/qwen3_4b_grpo.yaml"
    path = tmp_path / "sweeps" / "x.yaml"
    path.parent.mkdir(exist_ok=True)
    (tmp_path / "configs").symlink_to(ROOT / "configs") if not (tmp_path / "configs").exists() else None
    path.write_text(
        f"name: x\ntrainer: {{backend: {backend}, base: {base}}}\nfactors:\n{factors}\nseeds: 1\n"
        "budget: {max_steps: 20, eval_every: 10, save_every: 10}\n"
    )
    return path


def test_shorthands_map_to_verls_keys(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, "  rollout_dtype: [bf16, float16, fp32]\n"
                                     "  rollout_correction: [null, token, {level: sequence, threshold: '0.5_5.0'}]\n"))
    trials = {t.point: t.overrides for t in expand(spec).trials}
    assert len(trials) == 9
    none = trials["rollout_dtype=bf16_rollout_correction=none"]
    assert none["actor_rollout_ref.rollout.dtype"] == "bfloat16"
    assert none[C + "rollout_is"] is None and C + "rollout_is_threshold" not in none
    assert none["actor_rollout_ref.rollout.calculate_log_probs"] is True
    token = trials["rollout_dtype=fp16_rollout_correction=token"]
    assert (token["actor_rollout_ref.rollout.dtype"], token[C + "rollout_is"], token[C + "rollout_is_threshold"]) == (
        "float16", "token", 2.0)  # verl's default threshold
    seq = trials["rollout_dtype=fp32_rollout_correction=seq"]
    assert (seq[C + "rollout_is"], seq[C + "rollout_is_threshold"]) == ("sequence", "0.5_5.0")


@pytest.mark.parametrize(("factors", "message"), [
    ("  rollout_dtype: [bf16, fp8]\n", "must be one of bfloat16, float16, float32 (or bf16, fp16, fp32) (got 'fp8')"),
    ("  rollout_correction: [null, tokens]\n",
     "factors.rollout_correction[1].level: must be 'token' or 'sequence' (got 'tokens')"),
    ("  rollout_correction: [{level: token, threshold: -1}]\n",
     "rollout_is_threshold upper bound must be positive, got -1.0"),
    ("  rollout_correction: [{level: token, threshold: '3_2'}]\n",
     "rollout_is_threshold lower bound must be <= upper bound"),
    ("  rollout_correction: [{threshold: 2}]\n", "`threshold` applies only with `level: token` or `level: sequence`"),
    ("  rollout_correction: [{level: token, cap: 2}]\n", "unknown key `cap`; allowed: level, threshold, label"),
    ("  rollout_correction: [token, {level: token, threshold: 2.0}]\n", "duplicate levels"),
])
def test_bad_levels_are_refused_in_one_line_with_exit_2(tmp_path: Path, factors: str, message: str) -> None:
    path = _spec(tmp_path, factors)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    result = CliRunner().invoke(app, ["plan", str(path), "--no-validate"])
    assert result.exit_code == 2
    assert message.split(" (got")[0].split("[")[0] in " ".join(result.output.split())


def test_a_fixed_override_of_a_key_the_shorthand_sets_is_refused(tmp_path: Path) -> None:
    path = _spec(tmp_path, "  rollout_correction: [null, token]\n")
    path.write_text(path.read_text().replace("trainer: {backend: mini, base: ../configs/mini/original.yaml}",
                                             "trainer: {backend: mini, base: ../configs/mini/original.yaml, "
                                             f"overrides: {{{C}rollout_is_threshold: 3.0}}}}"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "rollout_is_threshold" in str(info.value)


@pytest.mark.parametrize("sweep", ["mismatch.yaml", "mismatch_verl.yaml"])
def test_shipped_sweeps_validate_against_their_trainers_config(sweep: str) -> None:
    ablate = str(Path(sys.executable).parent / "ablate")
    result = subprocess.run([ablate, "plan", f"sweeps/{sweep}", "--json"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    trials = json.loads(result.stdout)
    assert all(t["errors"] == [] for t in trials)
    points = {t["name"].rsplit("_s", 1)[0] for t in trials}
    assert points == {"rollout_dtype=bf16_rollout_correction=none", "rollout_dtype=fp16_rollout_correction=none",
                      "rollout_dtype=fp32_rollout_correction=none", "rollout_dtype=bf16_rollout_correction=token",
                      "rollout_dtype=bf16_rollout_correction=seq"}
    argv = " ".join(next(t["argv"] for t in trials if "=seq_" in t["name"]))
    assert f"{C}rollout_is=sequence" in argv and f"{C}rollout_is_threshold=2.0" in argv
    assert "actor_rollout_ref.rollout.calculate_log_probs=true" in argv


def _history(**series: list[float]) -> list[StepMetrics]:
    steps = len(next(iter(series.values())))
    return [StepMetrics(i + 1, {name: values[i] for name, values in series.items()}) for i in range(steps)]


def test_mismatch_signs_warn_at_their_first_streak_and_are_pure() -> None:
    signs = {s.name: s for s in build_signs() if s.name in MISMATCH_SIGN_NAMES}
    assert set(signs) == {"is_ess_low", "probs_gap_rise"}
    ess = [1.0, 0.9, 0.5, 0.29, 0.2, 0.4, 0.25, 0.2, 0.1, 0.1]  # below 0.3 at readings 4-5, then 7-9 in a row
    gap = [0.01, 0.012, 0.01, 0.011, 0.009, 0.02, 0.031, 0.04, 0.05, 0.05]  # early median 0.01; > 0.03 from 7th
    history = _history(**{"rollout_corr/rollout_is_eff_sample_size": ess, "training/rollout_probs_diff_mean": gap})
    for name, (step, onset) in {"is_ess_low": (9, 7), "probs_gap_rise": (9, 7)}.items():
        warning = signs[name].warn(history)
        assert warning is not None and (warning.step, warning.evidence["onset_step"]) == (step, onset), name
        assert signs[name].warn(history[: step - 1]) is None, name
        assert signs[name].warn(history[:step]) == warning, name
    assert "above 3x its early level 0.01" in signs["probs_gap_rise"].warn(history).reason
    assert "below 0.3 for 3 step(s)" in signs["is_ess_low"].warn(history).reason
    healthy = _history(**{"rollout_corr/rollout_is_eff_sample_size": [0.95] * 10,
                          "training/rollout_probs_diff_mean": [0.01, 0.02] * 5})
    assert collect_warnings(list(signs.values()), healthy) == []


def test_the_report_timeline_shows_mismatch_warnings_with_their_lead(tmp_path: Path) -> None:
    metric = "val-core/big/reward/mean@1"
    rows = []
    for step in range(1, 61):
        data = {"actor/entropy": 1.0, "response_length/mean": 300.0, "actor/grad_norm": 1.0,
                "training/rollout_probs_diff_mean": 0.01 if step <= 20 else 0.05,
                "rollout_corr/rollout_is_eff_sample_size": 0.9 if step <= 30 else 0.2}
        if step % 10 == 0:
            data[metric] = 0.8 if step <= 40 else 0.2
        rows.append({"step": step, "data": data})
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["analyze", str(path), "--out", str(tmp_path / "r"), "--eval-size", "big=500"])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "r" / "report.md").read_text()
    # probs_gap_rise: above 3x its early level from step 21, warned at step 23; is_ess_low from 31, warned at 33.
    assert "`probs_gap_rise` at step 23 (27 steps before the onset)" in markdown
    assert "`is_ess_low` at step 33 (17 steps before the onset)" in markdown
    assert "stopped" not in markdown.split("`is_ess_low` at step 33")[1].split("\n")[0]
