"""The miniature's rollout correction and rollout precision against verl 0.9.1's own functions and config."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from orchestrator.minigrpo.algos import policy_loss, reinforce_loss
from orchestrator.minigrpo.config import MiniConfigError, compose
from orchestrator.minigrpo.corr_spec import RS_OPTIONS, parse_is_threshold, parse_rs
from orchestrator.minigrpo.model import ModelSpec, TinyTransformer, load_rounded
from orchestrator.minigrpo.rollout_corr import (
    correct,
    is_weights,
    offpolicy_metrics,
    probs_diff_metrics,
    rejection_mask,
)
from orchestrator.minigrpo.trainer import train

helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

ROOT = Path(__file__).resolve().parents[1]
C = "algorithm.rollout_correction."


def _batch(seed: int = 0, rows: int = 8, length: int = 6, spread: float = 0.3) -> tuple[torch.Tensor, ...]:
    """Trainer and sampler log-probs of the same tokens, and a response mask with ragged lengths."""
    generator = torch.Generator().manual_seed(seed)
    rollout = -torch.rand(rows, length, generator=generator) * 2
    train_lp = rollout + spread * torch.randn(rows, length, generator=generator)
    lengths = torch.randint(1, length + 1, (rows,), generator=generator)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return train_lp, rollout, mask


def _same_metrics(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        value = float(value)
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("threshold", [2.0, 1.2, "0.5_2.0", "0.8_1.5"])
@pytest.mark.parametrize("normalize", [False, True])
def test_is_weights_and_metrics_match_verl(level: str, threshold: Any, normalize: bool) -> None:
    train_lp, rollout, mask = _batch(seed=1)
    log_ratio = train_lp - rollout
    ours, ours_metrics = is_weights(log_ratio, mask, level, threshold, normalize)
    try:
        theirs, theirs_metrics = helper.compute_rollout_correction_weights(log_ratio, mask, level, threshold,
                                                                           normalize)
    except ZeroDivisionError:  # verl's ESS when IcePop zeroes every weight; ours says 0 effective samples
        assert float(ours.abs().sum()) == 0.0 and ours_metrics["rollout_is_eff_sample_size"] == 0.0
        return
    assert torch.allclose(ours, theirs, atol=1e-6)
    _same_metrics(ours_metrics, theirs_metrics)


def test_is_weights_hand_values() -> None:
    # One sequence of two tokens with log ratios log 3 and log 0.5: token weights clamp 3 -> 2; the sequence's
    # weight is 1.5 (under the threshold), on both tokens.
    log_ratio = torch.log(torch.tensor([[3.0, 0.5]]))
    mask = torch.ones(1, 2)
    token, _ = is_weights(log_ratio, mask, "token", 2.0)
    sequence, metrics = is_weights(log_ratio, mask, "sequence", 2.0)
    assert torch.allclose(token, torch.tensor([[2.0, 0.5]]))
    assert torch.allclose(sequence, torch.tensor([[1.5, 1.5]]))
    assert metrics["rollout_is_eff_sample_size"] == pytest.approx(1.0)
    icepop, _ = is_weights(log_ratio, mask, "token", "0.6_2.0")  # IcePop zeroes weights outside [0.6, 2.0]
    assert torch.allclose(icepop, torch.tensor([[0.0, 0.0]]))


@pytest.mark.parametrize("option", sorted(RS_OPTIONS))
def test_rejection_mask_matches_verl_for_every_option(option: str) -> None:
    train_lp, rollout, mask = _batch(seed=2, spread=0.6)
    log_ratio = train_lp - rollout
    upper = {"token": 0.3, "seq_sum": 1.0, "seq_mean": 0.08, "seq_max": 0.5}[option.rsplit("_", 1)[0]]
    threshold = "0.7_1.6" if option.endswith("k1") else upper
    ours_mask, ours_metrics = rejection_mask(log_ratio, mask, option, threshold)
    theirs_mask, theirs_metrics = helper.compute_rollout_rejection_mask(log_ratio, mask, option, threshold)
    assert torch.equal(ours_mask, theirs_mask)
    assert 0 < float(ours_mask.sum()) < float(mask.sum())  # some tokens kept, some rejected: the test can fail
    _same_metrics(ours_metrics, theirs_metrics)


@pytest.mark.parametrize(("options", "threshold"), [
    ("token_k1,seq_mean_k3", "0.6_1.8,0.05"),
    ("seq_sum_k2,token_k3,seq_sum_k2", 0.3),  # duplicates dropped, one threshold for all
    ("token_k1", 1.5),  # one value v for a k1 option: [1/v, v]
])
def test_rejection_mask_chains_options_like_verl(options: str, threshold: Any) -> None:
    train_lp, rollout, mask = _batch(seed=3, spread=0.5)
    log_ratio = train_lp - rollout
    ours_mask, ours_metrics = rejection_mask(log_ratio, mask, options, threshold)
    theirs_mask, theirs_metrics = helper.compute_rollout_rejection_mask(log_ratio, mask, options, threshold)
    assert torch.equal(ours_mask, theirs_mask)
    _same_metrics(ours_metrics, theirs_metrics)


def test_offpolicy_metrics_match_verl() -> None:
    train_lp, rollout, mask = _batch(seed=4)
    _same_metrics(offpolicy_metrics(train_lp, rollout, mask), helper.compute_offpolicy_metrics(train_lp, rollout, mask))


@pytest.mark.parametrize(("level", "rs", "rs_threshold"), [
    (None, None, None), ("token", None, None), ("sequence", "seq_mean_k3", 0.02), (None, "token_k2", 0.05),
])
def test_correct_matches_verl_end_to_end(level: str | None, rs: str | None, rs_threshold: Any) -> None:
    train_lp, rollout, mask = _batch(seed=5, spread=0.4)
    ours = correct(train_lp, rollout, mask, level, 2.0, False, rs, rs_threshold)
    weights, theirs_mask, theirs_metrics = helper.compute_rollout_correction_and_rejection_mask(
        train_lp, rollout, mask, rollout_is=level, rollout_is_threshold=2.0, rollout_rs=rs,
        rollout_rs_threshold=rs_threshold,
    )
    assert (ours.weights is None) == (weights is None)
    if weights is not None:
        assert torch.allclose(ours.weights, weights.batch["rollout_is_weights"], atol=1e-6)
    assert torch.equal(ours.mask, theirs_mask)
    _same_metrics(ours.metrics, theirs_metrics)
    assert all(key.startswith("rollout_corr/") for key in ours.metrics)


def test_probs_diff_metrics_match_verl_debug_metrics() -> None:
    from verl.protocol import DataProto
    from verl.utils.debug.metrics import calculate_debug_metrics

    train_lp, rollout, mask = _batch(seed=6)
    data = DataProto.from_dict(tensors={"rollout_log_probs": rollout, "old_log_probs": train_lp, "response_mask": mask,
                                        "responses": torch.zeros_like(mask, dtype=torch.long)})
    _same_metrics(probs_diff_metrics(train_lp, rollout, mask), calculate_debug_metrics(data))


def _actor_config(mode: str = "token-mean") -> Any:
    from verl.workers.config.actor import ActorConfig

    return ActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=1, rollout_n=1,
                       clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode=mode)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_policy_loss_with_is_weights_matches_verl(mode: str) -> None:
    old, new, mask = _batch(seed=7)
    advantages = torch.randn(old.shape[0], 1, generator=torch.Generator().manual_seed(1)).expand_as(old) * mask
    weights, _ = is_weights(new - old, mask, "token", 2.0)
    theirs, _ = core_algos.compute_policy_loss_vanilla(old, new, advantages, mask, mode, _actor_config(mode),
                                                       rollout_is_weights=weights)
    ours = policy_loss(old, new, advantages, mask, 0.2, 0.28, 3.0, mode, weights)
    assert torch.allclose(ours.loss, theirs, atol=1e-6)
    unweighted = policy_loss(old, new, advantages, mask, 0.2, 0.28, 3.0, mode)
    assert not torch.allclose(ours.loss, unweighted.loss)  # the weights change the loss


@pytest.mark.parametrize("with_weights", [False, True])
def test_reinforce_loss_matches_verl_bypass_mode(with_weights: bool) -> None:
    rollout, current, mask = _batch(seed=8)
    advantages = torch.randn(rollout.shape[0], 1, generator=torch.Generator().manual_seed(2)).expand_as(rollout) * mask
    weights = is_weights(current - rollout, mask, "sequence", 2.0)[0] if with_weights else None
    theirs, theirs_metrics = core_algos.compute_policy_loss_reinforce(
        rollout, current, advantages, mask, "token-mean", _actor_config(), rollout_is_weights=weights
    )
    ours, ppo_kl = reinforce_loss(rollout, current, advantages, mask, "token-mean", weights)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert ppo_kl == pytest.approx(theirs_metrics["actor/ppo_kl"], abs=1e-6)


@pytest.mark.parametrize("spec", [2.0, 3, "2.5", "0.5_5.0", "1_1", 0, -1.0, "abc", "0.5_x", "3_2", "-1_2", True, ""])
def test_is_threshold_parser_accepts_and_refuses_what_verl_does(spec: Any) -> None:
    try:
        expected = helper._parse_rollout_is_threshold(spec)
    except (ValueError, TypeError):
        with pytest.raises(ValueError):
            parse_is_threshold(spec)
        return
    assert parse_is_threshold(spec) == expected


@pytest.mark.parametrize(("options", "threshold"), [
    ("token_k1", "0.5_2.0"), ("token_k1", 2.0), ("seq_mean_k3", 0.1), ("token_k2,seq_max_k3", "0.1,0.2"),
    ("token_k4", 0.1), ("token_k2", None), ("token_k2", "0.1_0.2"), ("token_k2,token_k3", "0.1,0.2,0.3"),
    ("seq_sum_k1", "2_1"), ("token_k3", -0.5), ("token_k3", "x"),
])
def test_rs_parser_accepts_and_refuses_what_verl_does(options: str, threshold: Any) -> None:
    try:
        names = [o.strip() for o in dict.fromkeys(options.split(","))]
        if any(name not in RS_OPTIONS for name in names):
            raise ValueError("unknown option")
        expected = helper._parse_rollout_rs_thresholds(names, threshold)
    except (ValueError, TypeError):
        with pytest.raises(ValueError):
            parse_rs(options, threshold)
        return
    parsed = {check.option: check for check in parse_rs(options, threshold)}
    for name, bounds in expected.items():
        is_k1 = name.endswith("k1")
        upper = math.log(bounds["upper"]) if is_k1 else bounds["upper"]
        assert parsed[name].upper == pytest.approx(upper)
        assert (parsed[name].lower is None) == (not is_k1)
        if is_k1:
            assert parsed[name].lower == pytest.approx(math.log(bounds["lower"]))


def test_the_minis_defaults_are_verls_rollout_correction_defaults() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import verl

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        theirs = hydra_compose(config_name="ppo_trainer").algorithm.rollout_correction
    ours = compose([]).algorithm.rollout_correction
    assert dict(ours) == dict(theirs)


@pytest.mark.parametrize(("override", "message"), [
    (f"{C}rollout_is=tokens", "`algorithm.rollout_correction.rollout_is` must be null or one of [token, sequence]"),
    (f"{C}rollout_is_threshold=-2", "rollout_is_threshold upper bound must be positive, got -2.0"),
    (f"{C}rollout_is_threshold=0.5_x", "Invalid rollout_is_threshold '0.5_x'"),
    (f"{C}rollout_is_threshold='3_2'", "rollout_is_threshold lower bound must be <= upper bound"),
    (f"{C}rollout_rs=token_k9", "Invalid rollout_rs option: token_k9"),
    (f"{C}rollout_rs=token_k2", "rollout_rs_threshold must be provided for rejection sampling"),
    (f"{C}loss_type=ppo", "`algorithm.rollout_correction.loss_type` must be one of [ppo_clip, reinforce]"),
    ("actor_rollout_ref.rollout.dtype=fp8", "must be one of [bfloat16, float16, float32] but got 'fp8'"),
    (f"{C}rollout_is_level=token", "Key 'rollout_is_level' is not in struct"),
])
def test_compose_refuses_bad_rollout_correction_keys_in_one_line(override: str, message: str) -> None:
    with pytest.raises(MiniConfigError) as info:
        compose([override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_refuses_an_out_of_range_threshold_with_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "orchestrator.minigrpo", f"{C}rollout_is_threshold=0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: `algorithm.rollout_correction.rollout_is_threshold`: rollout_is_threshold upper bound must be "
        "positive, got 0.0. (got 0)"
    ]


def test_load_rounded_rounds_to_each_precision() -> None:
    spec = ModelSpec(vocab_size=8, max_positions=4, d_model=8, n_layers=1, n_heads=2, mlp_ratio=2)
    source, target = TinyTransformer.seeded(spec, 0), TinyTransformer.seeded(spec, 1)
    errors = {}
    for dtype in ("bfloat16", "float16", "float32"):
        load_rounded(target, source, dtype)
        with torch.no_grad():
            errors[dtype] = max(float((t - s).abs().max()) for t, s in zip(target.parameters(), source.parameters()))
    assert errors["float32"] == 0.0
    assert 0.0 < errors["float16"] < errors["bfloat16"]  # fp16 keeps 3 more mantissa bits than bf16


TINY = [
    "mini.warm_start.steps=60", "mini.task.n_train_prompts=400", "mini.task.n_val_prompts=32",
    "data.train_batch_size=8", "actor_rollout_ref.actor.ppo_mini_batch_size=8", "trainer.test_freq=-1",
    "trainer.val_before_train=false", "trainer.logger=[file]", "trainer.resume_mode=disable",
    "trainer.total_training_steps=3",
]


@pytest.fixture
def workdir(minigrpo_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(minigrpo_cache))
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(workdir: Path, *overrides: str) -> list[dict[str, Any]]:
    train(compose([*TINY, *overrides]))
    records = [json.loads(line)["data"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    (workdir / "metrics.jsonl").unlink()
    return records


def test_training_logs_verls_mismatch_metrics_and_the_precision_sets_the_gap(workdir: Path) -> None:
    by_dtype = {dtype: _train(workdir, f"actor_rollout_ref.rollout.dtype={dtype}")
                for dtype in ("bfloat16", "float16", "float32")}
    first = by_dtype["bfloat16"][0]
    train_lp, rollout, mask = _batch()
    expected = {f"rollout_corr/{k}" for k in helper.compute_offpolicy_metrics(train_lp, rollout, mask)}
    expected |= {"training/rollout_probs_diff_max", "training/rollout_probs_diff_mean",
                 "training/rollout_probs_diff_std", "training/rollout_probs_diff_valid",
                 "training/rollout_actor_probs_pearson_corr"}
    assert expected <= set(first)
    assert not any(k.startswith("rollout_corr/rollout_is") for k in first)  # rollout_is null: metrics only
    gap = {dtype: records[0]["training/rollout_probs_diff_max"] for dtype, records in by_dtype.items()}
    assert gap["float32"] < 1e-6  # the same weights: only float rounding between cached and full forward passes
    assert 1e-6 < gap["float16"] < gap["bfloat16"]


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_importance_sampling_changes_the_update_and_logs_verls_names(workdir: Path, level: str) -> None:
    plain = _train(workdir, "algorithm.rollout_correction.rollout_is=null")
    corrected = _train(workdir, f"{C}rollout_is={level}", f"{C}rollout_is_threshold=1.0001")
    train_lp, rollout, mask = _batch()
    _, _, names = helper.compute_rollout_correction_and_rejection_mask(
        train_lp, rollout, mask, rollout_is=level, rollout_is_threshold=1.0001)
    assert set(names) <= set(corrected[0])
    assert corrected[0]["critic/score/mean"] == plain[0]["critic/score/mean"]  # the same first rollout
    assert corrected[0]["actor/pg_loss"] != plain[0]["actor/pg_loss"]  # weights truncated at ~1 change the loss
    assert 0 < corrected[0]["rollout_corr/rollout_is_eff_sample_size"] <= 1


def test_rejection_sampling_and_bypass_modes_train(workdir: Path) -> None:
    rejected = _train(workdir, f"{C}rollout_rs=token_k1", f"{C}rollout_rs_threshold=1.0001")
    assert rejected[0]["rollout_corr/rollout_rs_masked_fraction"] > 0
    for loss_type in ("ppo_clip", "reinforce"):
        records = _train(workdir, f"{C}bypass_mode=true", f"{C}loss_type={loss_type}", f"{C}rollout_is=token")
        assert "rollout_corr/rollout_is_eff_sample_size" in records[0]
        assert all(math.isfinite(r["actor/pg_loss"]) for r in records)
        assert ("actor/pg_clipfrac" in records[0]) == (loss_type == "ppo_clip")
