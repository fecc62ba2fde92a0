"""GRPO's pieces as verl 0.9.1 defines them: advantages, KL estimators, loss aggregation, PPO-clip, LR schedules.

Written from verl's definitions (verl/trainer/ppo/core_algos.py, verl/utils/torch_functional.py) for one process
(no data parallelism); tests/test_minigrpo_algos.py checks each against verl's own functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def grpo_advantages(scores: torch.Tensor, group_size: int, norm_by_std: bool, epsilon: float = 1e-6) -> torch.Tensor:
    """Return group-normalised outcome advantages, one per response.

    Responses of one prompt are contiguous groups of `group_size` (verl repeats prompts interleaved). Each score
    loses its group's mean and, with `norm_by_std`, is divided by the group's unbiased std + epsilon. A group of
    one keeps its raw score (verl's mean 0, std 1 for singletons).

    Args:
        scores: (M,) outcome rewards, M a multiple of group_size.
        group_size: Responses per prompt (rollout.n).
        norm_by_std: Divide by the group std (GRPO) or not (Dr.GRPO).
        epsilon: Added to the std.

    Returns:
        (M,) advantages.
    """
    if group_size == 1:
        return scores.clone()
    groups = scores.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if norm_by_std:
        centred = centred / (groups.std(dim=1, keepdim=True) + epsilon)
    return centred.reshape(-1)


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    """Return the per-token KL estimate between the policy and the reference.

    Args:
        log_prob: Policy log-probs of the sampled tokens.
        ref_log_prob: Reference log-probs of the same tokens.
        kind: "kl"/"k1" (log ratio), "abs", "mse"/"k2" (half squared log ratio), "low_var_kl"/"k3"
            (exp(r) - r - 1 with r = ref - logp clamped to [-20, 20], result clamped to [-10, 10]). A trailing "+"
            keeps the value but takes the gradient of k2 (straight-through), except for mse/k2 themselves.

    Returns:
        The estimate, same shape as the inputs.
    """
    straight_through = kind.endswith("+")
    base = kind[:-1] if straight_through else kind
    value = _kl_forward(log_prob, ref_log_prob, base)
    if not straight_through or base in ("mse", "k2"):
        return value
    k2 = 0.5 * (log_prob - ref_log_prob).square()
    return k2 - k2.detach() + value.detach()


def _kl_forward(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    log_ratio = log_prob - ref_log_prob
    if kind in ("kl", "k1"):
        return log_ratio
    if kind == "abs":
        return log_ratio.abs()
    if kind in ("mse", "k2"):
        return 0.5 * log_ratio.square()
    if kind in ("low_var_kl", "k3"):
        reverse = torch.clamp(-log_ratio, min=-20.0, max=20.0)
        return torch.clamp(torch.exp(reverse) - reverse - 1.0, min=-10.0, max=10.0)
    raise ValueError(f"kl_loss_type must be one of kl, k1, abs, mse, k2, low_var_kl, k3 (got {kind!r})")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mean of `values` where `mask` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Aggregate a per-token loss (B, L) into a scalar, as verl's agg_loss does on one process.

    Args:
        loss_mat: Per-token losses.
        mask: 1 on response tokens.
        mode: "token-mean" (all tokens weigh the same), "token-sum", "seq-mean-token-sum" (sum per sequence, mean
            over sequences), "seq-mean-token-mean" (mean per sequence, then over sequences) or
            "seq-mean-token-sum-norm" (seq-mean-token-sum divided by the padded length L).

    Returns:
        The scalar loss.
    """
    if mode == "token-mean":
        return (loss_mat * mask).sum() / mask.sum()
    if mode == "token-sum":
        return (loss_mat * mask).sum()
    seq_tokens = mask.sum(dim=-1)
    seq_mask = (seq_tokens > 0).float()
    if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        loss = ((loss_mat * mask).sum(dim=-1) * seq_mask).sum() / seq_mask.sum()
        return loss / mask.shape[-1] if mode == "seq-mean-token-sum-norm" else loss
    if mode == "seq-mean-token-mean":
        per_seq = (loss_mat * mask).sum(dim=-1) / (seq_tokens + 1e-8)
        return (per_seq * seq_mask).sum() / seq_mask.sum()
    raise ValueError(f"loss_agg_mode must be one of token-mean, token-sum, seq-mean-token-sum, "
                     f"seq-mean-token-mean, seq-mean-token-sum-norm (got {mode!r})")


@dataclass(frozen=True)
class PolicyLoss:
    """The clipped policy-gradient loss and its diagnostics.

    Attributes:
        loss: The aggregated loss (differentiable).
        clipfrac: Share of tokens where the clipped term was used.
        ppo_kl: Masked mean of old - new log-probs.
        clipfrac_lower: Share of negative-advantage tokens bounded by the dual clip.
    """

    loss: torch.Tensor
    clipfrac: float
    ppo_kl: float
    clipfrac_lower: float


def policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    clip_c: float,
    agg_mode: str,
    weights: torch.Tensor | None = None,
) -> PolicyLoss:
    """Return PPO's clipped surrogate loss with dual clipping, as verl's vanilla policy loss.

    Args:
        old_log_prob: (B, L) log-probs of the policy that collected the data.
        log_prob: (B, L) current log-probs.
        advantages: (B, L) per-token advantages.
        mask: (B, L) response mask.
        clip_low: The ratio is clipped below at 1 - clip_low.
        clip_high: The ratio is clipped above at 1 + clip_high.
        clip_c: Dual-clip bound: a negative-advantage token loses at most -advantage * clip_c.
        agg_mode: Loss aggregation mode (see `agg_loss`).
        weights: (B, L) rollout-correction importance weights multiplying each token's loss, or None.

    Returns:
        The loss and its diagnostics.
    """
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pessimistic = torch.maximum(unclipped, clipped)
    dual_bound = -advantages * clip_c
    dual = torch.minimum(dual_bound, pessimistic)
    losses = torch.where(advantages < 0, dual, pessimistic)
    if weights is not None:
        losses = losses * weights
    negative = (advantages < 0).float()
    return PolicyLoss(
        loss=agg_loss(losses, mask, agg_mode),
        clipfrac=float(masked_mean((clipped > unclipped).float(), mask)),
        ppo_kl=float(masked_mean(-log_ratio.detach(), mask)),
        clipfrac_lower=float(masked_mean((pessimistic > dual_bound).float() * negative, mask)),
    )


def reinforce_loss(
    rollout_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    agg_mode: str,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Return verl's REINFORCE loss of bypass mode, -A * log pi (x the IS weights), and its ppo_kl diagnostic.

    Args:
        rollout_log_prob: (B, L) the sampler's log-probs (for the diagnostic only).
        log_prob: (B, L) current log-probs.
        advantages: (B, L) per-token advantages.
        mask: (B, L) response mask (rejected tokens already removed).
        agg_mode: Loss aggregation mode (see `agg_loss`).
        weights: (B, L) detached importance weights pi_current / pi_rollout, or None.

    Returns:
        The loss and the masked mean of rollout - current log-probs.
    """
    losses = -advantages * log_prob
    if weights is not None:
        losses = losses * weights
    return agg_loss(losses, mask, agg_mode), float(masked_mean((rollout_log_prob - log_prob).detach(), mask))


@dataclass(frozen=True)
class LrSchedule:
    """verl's FSDP learning-rate schedules: constant or cosine, both after a linear warmup from 0.

    Attributes:
        kind: "constant" or "cosine".
        warmup_steps: Linear warmup length.
        total_steps: Steps of the run (the cosine's length).
        min_lr_ratio: Cosine floor as a fraction of the peak.
        num_cycles: Cosine waves (0.5 = one half-wave down).
    """

    kind: str
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.0
    num_cycles: float = 0.5

    @classmethod
    def from_settings(
        cls,
        kind: str,
        warmup_steps: int | None,
        warmup_ratio: float,
        total_steps: int,
        min_lr_ratio: float | None,
        num_cycles: float,
    ) -> LrSchedule:
        """Build a schedule from verl's optim keys: warmup_steps <= 0 (or null) means int(warmup_ratio x total)."""
        if warmup_steps is None or warmup_steps <= 0:
            warmup_steps = int(warmup_ratio * total_steps)
        return cls(kind, warmup_steps, total_steps, min_lr_ratio or 0.0, num_cycles)

    def ratio(self, step: int) -> float:
        """Return the LR multiplier after `step` scheduler steps (0 before the first update)."""
        if step < self.warmup_steps:
            return float(step) / float(max(1, self.warmup_steps))
        if self.kind == "constant":
            return 1.0
        progress = float(step - self.warmup_steps) / float(max(1, self.total_steps - self.warmup_steps))
        half = (1.0 - self.min_lr_ratio) * 0.5
        wave = math.cos(math.pi * float(self.num_cycles) * 2.0 * progress)
        return max(self.min_lr_ratio, wave * half + (1.0 + self.min_lr_ratio) * 0.5)
