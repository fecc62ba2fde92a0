"""Rollout correction as verl 0.9.1 defines it: importance weights, rejection masks and mismatch diagnostics.

The sampler (the rounded copy of the weights) and the trainer (fp32) give the same tokens different probabilities.
verl's `algorithm.rollout_correction` measures that gap and corrects for it; this module is the same maths for
one process, written from verl's definitions (verl/trainer/ppo/rollout_corr_helper.py and
verl/utils/debug/metrics.py). `log_ratio` is always log pi_train - log pi_rollout of the sampled tokens.

- `is_weights`: truncated importance weights, per token or per sequence (the product of the token ratios),
  clamped above at the threshold (TIS) or zeroed outside `lower_upper` bounds (IcePop), optionally normalised to a
  batch mean of 1; with verl's `rollout_is_*` metrics (the effective sample size among them).
- `rejection_mask`: verl's `rollout_rs` options (`token_k1`, `seq_mean_k3`, ...; comma-separated, all must pass),
  with its `rollout_rs_*` metrics.
- `offpolicy_metrics`: KL, perplexities, chi-squared between the two policies; `probs_diff_metrics`: verl's
  `training/rollout_probs_diff_*` debug metrics.

tests/test_minigrpo_rollout_corr.py checks every function and metric against verl's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from orchestrator.minigrpo.corr_spec import IS_LEVELS, RsCheck, parse_is_threshold, parse_rs

_BOUND = 20.0  # verl's safety bound on log ratios before exponentiating
_EPS = 1e-8


def _msum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    picked = torch.where(mask.bool(), values, torch.zeros_like(values)) * mask
    return picked.sum() if dim is None else picked.sum(dim=dim)


def _mmean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return _msum(values, mask, dim) / (count + _EPS)


def is_weights(
    log_ratio: torch.Tensor, mask: torch.Tensor, level: str, threshold: object, batch_normalize: bool = False
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return the (detached) importance weights pi_train / pi_rollout, 0 on padding, and verl's `rollout_is_*` metrics.

    Args:
        log_ratio: (B, L) log pi_train - log pi_rollout.
        mask: (B, L) response mask.
        level: "token" (a weight per token) or "sequence" (the product over the sequence, on every token).
        threshold: A number (weights clamped above at it) or "lower_upper" (weights outside zeroed).
        batch_normalize: Divide the weights by their batch mean (per token, or per sequence).
    """
    if level not in IS_LEVELS:
        raise ValueError(f"Invalid rollout_is: {level}. Must be one of {set(IS_LEVELS)}.")
    upper, lower = parse_is_threshold(threshold)
    if level == "token":
        ratio_log = log_ratio
        raw = torch.exp(log_ratio.clamp(-_BOUND, _BOUND))
    else:
        ratio_log = _msum(log_ratio, mask, dim=-1).unsqueeze(-1)
        raw = torch.exp(ratio_log.clamp(-_BOUND, _BOUND)).expand_as(log_ratio)
    raw = raw * mask
    if lower is None:
        weights = raw.clamp(max=upper)
    else:
        weights = torch.where((raw >= lower) & (raw <= upper), raw, torch.zeros_like(raw))
    metrics = _is_metrics(weights, raw, ratio_log, mask, level, upper, lower)
    if lower is not None:
        metrics["rollout_is_oob_ratio"] = float(_mmean(((raw < lower) | (raw > upper)).float(), mask))
    weights = weights.detach()
    if batch_normalize:
        if level == "token":
            batch_mean = _mmean(weights, mask)
        else:
            seq_mask = (mask.sum(dim=-1) > 0).to(weights.dtype)
            batch_mean = (_mmean(weights, mask, dim=-1) * seq_mask).sum() / seq_mask.sum().clamp_min(_EPS)
        factor = float(batch_mean) if float(batch_mean) > _EPS else 1.0
        weights = weights / batch_mean if float(batch_mean) > _EPS else weights
        metrics["rollout_is_batch_norm_factor"] = factor
    return weights, metrics


def _is_metrics(
    weights: torch.Tensor, raw: torch.Tensor, ratio_log: torch.Tensor, mask: torch.Tensor, level: str,
    upper: float, lower: float | None,
) -> dict[str, float]:
    low = 1.0 / upper if lower is None else lower
    valid = mask.bool()
    metrics = {"rollout_is_mean": float(_mmean(weights, mask))}
    if level == "sequence":
        metrics["rollout_is_max"] = math.exp(min(float(ratio_log.max()), _BOUND))
        metrics["rollout_is_min"] = math.exp(float(ratio_log.min()))
        metrics["rollout_is_ratio_fraction_high"] = float((ratio_log > math.log(upper)).float().mean())
        metrics["rollout_is_ratio_fraction_low"] = float((ratio_log < math.log(low)).float().mean())
    else:
        metrics["rollout_is_ratio_fraction_high"] = float(_mmean((raw > upper).float(), mask))
        metrics["rollout_is_ratio_fraction_low"] = float(_mmean((raw < low).float(), mask))
        metrics["rollout_is_max"] = float(weights[valid].max())
        metrics["rollout_is_min"] = float(weights[valid].min())
    bounded = weights.clamp(min=0.0, max=upper)
    bounded_mean = _mmean(bounded, mask)
    metrics["rollout_is_std"] = 0.0
    if float(mask.sum()) > 1:
        variance = _mmean(bounded.square(), mask) - bounded_mean.square()
        metrics["rollout_is_std"] = float(variance.clamp(min=0.0).sqrt())
    normalised = bounded / (bounded_mean + _EPS)
    second_moment = float(_mmean(normalised.square(), mask))
    # Every weight zeroed (IcePop bounds that nothing meets): no effective sample (verl divides by zero there).
    metrics["rollout_is_eff_sample_size"] = 1.0 / second_moment if second_moment > 0 else 0.0
    per_seq = _mmean(weights, mask, dim=-1)
    raw_per_seq = _mmean(raw, mask, dim=-1)
    metrics.update({
        "rollout_is_seq_mean": float(per_seq.mean()),
        "rollout_is_seq_std": float(per_seq.std()) if per_seq.numel() > 1 else 0.0,
        "rollout_is_seq_max": float(per_seq.max()),
        "rollout_is_seq_min": float(per_seq.min()),
        "rollout_is_seq_max_deviation": float((per_seq - 1.0).abs().max()),
        "rollout_is_seq_fraction_high": float((raw_per_seq > upper).float().mean()),
        "rollout_is_seq_fraction_low": float((raw_per_seq < low).float().mean()),
    })
    return metrics


def rejection_mask(
    log_ratio: torch.Tensor, mask: torch.Tensor, options: object, threshold: object
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return the response mask with rejected tokens (or whole sequences) zeroed, and verl's `rollout_rs_*` metrics.

    Per token, k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r (log r clamped to +-20); a `seq_sum`, `seq_mean`
    or `seq_max` option aggregates them over the sequence and rejects the whole sequence.
    """
    checks = parse_rs(options, threshold)
    safe = log_ratio.clamp(-_BOUND, _BOUND)
    per_token = {"k1": -safe, "k2": 0.5 * safe.square(), "k3": torch.exp(safe) - 1.0 - safe}
    valid = mask.bool()
    seq_valid = mask.sum(dim=-1) > 0
    keep_all = torch.ones_like(mask, dtype=log_ratio.dtype)
    metrics: dict[str, float] = {}
    for check in checks:
        stat = per_token[check.estimator]
        per_seq: torch.Tensor | None = None
        if check.level != "token":
            per_seq = _aggregate(stat, mask, check.level)
            stat = per_seq.unsqueeze(-1).expand_as(mask)
        passes = stat <= check.upper
        if check.lower is not None:
            passes = passes & (stat >= check.lower)
        keep = passes.to(log_ratio.dtype)
        keep_all = keep_all * keep
        metrics.update(_rs_metrics(check, stat, per_seq, mask, seq_valid))
        seq_kept = (~(~passes & valid)).all(dim=-1)
        metrics[f"rollout_rs_{check.option}_masked_fraction"] = float(_mmean(1 - keep, mask))
        metrics[f"rollout_rs_{check.option}_seq_masked_fraction"] = (
            float((~seq_kept & seq_valid).float().sum() / seq_valid.float().sum()) if bool(seq_valid.any()) else 0.0
        )
    metrics["rollout_rs_masked_fraction"] = float(_mmean(1 - keep_all, mask))
    metrics["rollout_rs_seq_masked_fraction"] = float((~((keep_all > 0.5) & valid) & valid).any(dim=-1).float().mean())
    return (mask * keep_all).to(mask.dtype), metrics


def _aggregate(stat: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    if level == "sum":
        return _msum(stat, mask, dim=-1)
    if level == "mean":
        return _mmean(stat, mask, dim=-1)
    highest = stat.masked_fill(~mask.bool(), float("-inf")).max(dim=-1).values
    return torch.where(torch.isinf(highest), torch.zeros_like(highest), highest)


def _rs_metrics(
    check: RsCheck, stat: torch.Tensor, per_seq: torch.Tensor | None, mask: torch.Tensor, seq_valid: torch.Tensor
) -> dict[str, float]:
    prefix = f"rollout_rs_{check.option}"
    valid = mask.bool()
    seq_values = (per_seq if per_seq is not None else _mmean(stat, mask, dim=-1))[seq_valid]
    low = check.lower if check.lower is not None else 0.0
    out = {f"{prefix}_mean": float(_mmean(stat, mask))}
    if per_seq is not None:
        out[f"{prefix}_max"], out[f"{prefix}_min"] = float(seq_values.max()), float(seq_values.min())
        out[f"{prefix}_fraction_high"] = float((seq_values > check.upper).float().mean())
        out[f"{prefix}_fraction_low"] = float((seq_values < low).float().mean()) if check.lower is not None else 0.0
    else:
        out[f"{prefix}_max"], out[f"{prefix}_min"] = float(stat[valid].max()), float(stat[valid].min())
        out[f"{prefix}_fraction_high"] = float(_mmean((stat > check.upper).float(), mask))
        out[f"{prefix}_fraction_low"] = (
            float(_mmean((stat < low).float(), mask)) if check.lower is not None else 0.0
        )
    out[f"{prefix}_std"] = 0.0
    if float(mask.sum()) > 1:
        bounded = stat.clamp(min=low, max=check.upper)
        variance = _mmean(bounded.square(), mask) - _mmean(bounded, mask).square()
        out[f"{prefix}_std"] = float(variance.clamp(min=0.0).sqrt())
    out.update({
        f"{prefix}_seq_mean": float(seq_values.mean()),
        f"{prefix}_seq_std": float(seq_values.std()) if seq_values.numel() > 1 else 0.0,
        f"{prefix}_seq_max": float(seq_values.max()),
        f"{prefix}_seq_min": float(seq_values.min()),
        f"{prefix}_seq_max_deviation": float(seq_values.abs().max()),
        f"{prefix}_seq_fraction_high": float((seq_values > check.upper).float().mean()),
    })
    if check.lower is not None:
        out[f"{prefix}_seq_fraction_low"] = float((seq_values < low).float().mean())
    return out


def offpolicy_metrics(train_log_prob: torch.Tensor, rollout_log_prob: torch.Tensor, mask: torch.Tensor) -> dict:
    """Return verl's off-policy diagnostics (unprefixed): KL(rollout || train), perplexities, chi-squared."""
    train_mean = _mmean(train_log_prob, mask, dim=-1)
    rollout_mean = _mmean(rollout_log_prob, mask, dim=-1)
    log_ratio = train_log_prob - rollout_log_prob
    ppl_diff = rollout_mean - train_mean
    rho = torch.exp(log_ratio.clamp(-_BOUND, _BOUND))
    seq_log = _msum(log_ratio, mask, dim=-1).clamp(-_BOUND, _BOUND)
    return {
        "training_ppl": float(torch.exp(-train_mean).mean()),
        "training_log_ppl": float((-train_mean).mean()),
        "kl": float(_mmean(-log_ratio, mask)),
        "k3_kl": float(_mmean(torch.exp(log_ratio) - log_ratio - 1, mask)),
        "rollout_ppl": float(torch.exp(-rollout_mean).mean()),
        "rollout_log_ppl": float((-rollout_mean).mean()),
        "log_ppl_diff": float(ppl_diff.mean()),
        "log_ppl_abs_diff": float(ppl_diff.abs().mean()),
        "log_ppl_diff_max": float(ppl_diff.max()),
        "log_ppl_diff_min": float(ppl_diff.min()),
        "ppl_ratio": float(torch.exp(ppl_diff).mean()),
        "chi2_token": float(_mmean(rho.square(), mask) - 1.0),
        "chi2_seq": float(torch.exp(2.0 * seq_log).mean() - 1.0),
    }


@dataclass(frozen=True)
class Correction:
    """What rollout correction does to one batch.

    Attributes:
        weights: (B, L) importance weights for the policy loss, or None (no IS, or bypass with ppo_clip).
        mask: (B, L) the response mask with rejected tokens removed.
        metrics: verl's metrics, prefixed `rollout_corr/`.
    """

    weights: torch.Tensor | None
    mask: torch.Tensor
    metrics: dict[str, float]


def correct(
    train_log_prob: torch.Tensor,
    rollout_log_prob: torch.Tensor,
    mask: torch.Tensor,
    level: str | None,
    threshold: object,
    batch_normalize: bool = False,
    rs: str | None = None,
    rs_threshold: object = None,
) -> Correction:
    """Return the IS weights (when `level` is set), the rejection mask (when `rs` is set) and every metric.

    The same as verl's compute_rollout_correction_and_rejection_mask, on `train_log_prob` (the recomputed
    old log-probs, or in bypass mode the current policy's) against `rollout_log_prob`.
    """
    if not bool(mask.bool().any()):
        raise ValueError("response_mask must contain at least one valid token (1).")
    log_ratio = train_log_prob - rollout_log_prob
    metrics: dict[str, float] = {}
    weights = None
    if level is not None and threshold is not None:
        weights, found = is_weights(log_ratio, mask, level, threshold, batch_normalize)
        metrics.update(found)
    new_mask = mask.clone()
    if rs is not None:
        new_mask, found = rejection_mask(log_ratio, mask, rs, rs_threshold)
        metrics.update(found)
    metrics.update(offpolicy_metrics(train_log_prob, rollout_log_prob, mask))
    return Correction(weights, new_mask, {f"rollout_corr/{key}": value for key, value in metrics.items()})


def probs_diff_metrics(train_log_prob: torch.Tensor, rollout_log_prob: torch.Tensor, mask: torch.Tensor) -> dict:
    """Return verl's `training/rollout_probs_diff_*` and `training/rollout_actor_probs_pearson_corr` metrics."""
    valid = mask.bool()
    if not bool(valid.any()):
        nan = float("nan")
        return {"training/rollout_probs_diff_valid": 0, "training/rollout_probs_diff_max": nan,
                "training/rollout_probs_diff_mean": nan, "training/rollout_probs_diff_std": nan,
                "training/rollout_actor_probs_pearson_corr": nan}
    train_probs, rollout_probs = train_log_prob.exp()[valid], rollout_log_prob.exp()[valid]
    diff = (train_probs - rollout_probs).abs()
    return {
        "training/rollout_probs_diff_valid": 1,
        "training/rollout_probs_diff_max": float(diff.max()),
        "training/rollout_probs_diff_mean": float(diff.mean()),
        "training/rollout_probs_diff_std": float(diff.std()),
        "training/rollout_actor_probs_pearson_corr": float(
            torch.corrcoef(torch.stack([train_probs, rollout_probs]))[0, 1]
        ),
    }
