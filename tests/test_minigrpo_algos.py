"""The mini trainer's GRPO pieces against hand-computed values and against verl 0.9.1's own functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from orchestrator.minigrpo.algos import LrSchedule, agg_loss, grpo_advantages, kl_penalty, policy_loss

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
verl_torch_functional = pytest.importorskip("verl.utils.torch_functional")

LOSS_AGG_MODES = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KL_TYPES = ["low_var_kl", "k3", "kl", "k1", "mse", "k2", "abs", "low_var_kl+", "kl+", "k3+"]


def _batch(seed: int = 0, rows: int = 6, length: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(rows, length, generator=generator) * 3
    new = old + 0.4 * torch.randn(rows, length, generator=generator)
    lengths = torch.randint(1, length + 1, (rows,), generator=generator)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return old, new, mask


def test_grpo_advantages_hand_values_with_std() -> None:
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0])
    advantages = grpo_advantages(scores, group_size=2, norm_by_std=True)
    # group (1, 3): mean 2, unbiased std sqrt(2); group (2, 2): std 0 -> 0 / (0 + eps) = 0.
    expected = torch.tensor([-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0, 0.0])
    assert torch.allclose(advantages, expected, atol=1e-5)


def test_grpo_advantages_hand_values_without_std() -> None:
    scores = torch.tensor([1.0, 3.0, 2.0, 5.0, 0.0, 1.0])
    advantages = grpo_advantages(scores, group_size=3, norm_by_std=False)
    assert torch.allclose(advantages, torch.tensor([-1.0, 1.0, 0.0, 3.0, -2.0, -1.0]))


def test_grpo_advantages_singleton_groups_keep_raw_scores() -> None:
    scores = torch.tensor([0.5, -1.0, 2.0])
    assert torch.equal(grpo_advantages(scores, group_size=1, norm_by_std=True), scores)


@pytest.mark.parametrize("group_size", [1, 2, 4, 8])
@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_advantages_match_verl(group_size: int, norm_by_std: bool) -> None:
    generator = torch.Generator().manual_seed(group_size)
    scores = torch.randint(0, 4, (8 * group_size,), generator=generator).float() - 0.01 * torch.rand(8 * group_size)
    length = 4
    token_rewards = torch.zeros(len(scores), length)
    token_rewards[:, -1] = scores
    mask = torch.ones(len(scores), length)
    index = np.repeat(np.arange(8), group_size)
    verl_adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_rewards, mask, index, norm_adv_by_std_in_grpo=norm_by_std
    )
    ours = grpo_advantages(scores, group_size, norm_by_std)
    assert torch.allclose(ours.unsqueeze(1) * mask, verl_adv, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "log_prob", "ref_log_prob", "expected"),
    [
        ("kl", -1.0, -2.0, 1.0),
        ("mse", -1.0, -2.0, 0.5),
        ("abs", -2.0, -1.0, 1.0),
        ("low_var_kl", -1.0, -2.0, math.exp(-1.0) + 1.0 - 1.0),  # r = ref - logp = -1: e^-1 - (-1) - 1
        ("low_var_kl", -1.0, -1.0, 0.0),
        ("low_var_kl", -30.0, 0.0, 10.0),  # clamped: r = 20 -> e^20 - 21 -> 10
    ],
)
def test_kl_penalty_hand_values(kind: str, log_prob: float, ref_log_prob: float, expected: float) -> None:
    value = kl_penalty(torch.tensor([log_prob]), torch.tensor([ref_log_prob]), kind)
    assert value.item() == pytest.approx(expected, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("kind", KL_TYPES)
def test_kl_penalty_matches_verl_values_and_gradients(kind: str) -> None:
    old, new, _ = _batch(seed=3)
    ours_in = new.clone().requires_grad_(True)
    verl_in = new.clone().requires_grad_(True)
    ours = kl_penalty(ours_in, old, kind)
    theirs = core_algos.kl_penalty(verl_in, old, kind)
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours.sum().backward()
    theirs.sum().backward()
    assert torch.allclose(ours_in.grad, verl_in.grad, atol=1e-6)


def test_agg_loss_hand_values() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert agg_loss(loss, mask, "token-mean").item() == pytest.approx((1 + 2 + 4) / 3)
    assert agg_loss(loss, mask, "token-sum").item() == pytest.approx(7.0)
    assert agg_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx((3 + 4) / 2)
    assert agg_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((1.5 + 4) / 2)
    assert agg_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx((3 + 4) / 2 / 3)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_agg_loss_matches_verl(mode: str) -> None:
    _, values, mask = _batch(seed=5)
    assert torch.allclose(agg_loss(values, mask, mode), core_algos.agg_loss(values, mask, mode), atol=1e-6)


def test_policy_loss_hand_values() -> None:
    # one token per row; ratios e^0.5 (clipped above at 1.2 for A > 0), e^-0.5 (clipped below at 0.8 for A < 0).
    old = torch.zeros(2, 1)
    new = torch.tensor([[0.5], [-0.5]])
    advantages = torch.tensor([[1.0], [-1.0]])
    mask = torch.ones(2, 1)
    result = policy_loss(old, new, advantages, mask, 0.2, 0.2, 3.0, "token-mean")
    # row 1: max(-1 * 1.6487, -1 * 1.2) = -1.2; row 2: max(1 * 0.6065, 1 * 0.8) = 0.8.
    assert result.loss.item() == pytest.approx((-1.2 + 0.8) / 2, rel=1e-5)
    assert result.clipfrac == pytest.approx(1.0)
    assert result.ppo_kl == pytest.approx(0.0)


def test_policy_loss_dual_clip_bounds_negative_advantages() -> None:
    result = policy_loss(torch.zeros(1, 1), torch.tensor([[3.0]]), torch.tensor([[-1.0]]), torch.ones(1, 1),
                         0.2, 0.2, 3.0, "token-mean")
    assert result.loss.item() == pytest.approx(3.0)
    assert result.clipfrac_lower == pytest.approx(1.0)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize(("clip_low", "clip_high"), [(0.2, 0.2), (0.2, 0.28), (0.1, 0.3)])
def test_policy_loss_matches_verl(mode: str, clip_low: float, clip_high: float) -> None:
    from verl.workers.config.actor import ActorConfig

    old, new, mask = _batch(seed=7)
    advantages = torch.randn(old.shape[0], 1, generator=torch.Generator().manual_seed(1)).expand_as(old) * mask
    config = ActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=1, rollout_n=1,
                         clip_ratio=0.2, clip_ratio_low=clip_low, clip_ratio_high=clip_high, clip_ratio_c=3.0,
                         loss_agg_mode=mode)
    verl_loss, verl_metrics = core_algos.compute_policy_loss_vanilla(old, new, advantages, mask, mode, config)
    ours = policy_loss(old, new, advantages, mask, clip_low, clip_high, 3.0, mode)
    assert torch.allclose(ours.loss, verl_loss, atol=1e-6)
    assert ours.clipfrac == pytest.approx(verl_metrics["actor/pg_clipfrac"], abs=1e-6)
    assert ours.ppo_kl == pytest.approx(verl_metrics["actor/ppo_kl"], abs=1e-6)
    assert ours.clipfrac_lower == pytest.approx(verl_metrics["actor/pg_clipfrac_lower"], abs=1e-6)


def _verl_lrs(scheduler_factory: object, steps: int, **kwargs: object) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = scheduler_factory(optimizer, **kwargs)  # type: ignore[operator]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    ("warmup", "total", "min_lr_ratio", "num_cycles"),
    [(0, 50, 0.0, 0.5), (10, 50, 0.0, 0.5), (10, 50, 0.1, 0.5), (5, 30, 0.2, 1.0), (60, 50, 0.0, 0.5)],
)
def test_cosine_schedule_matches_verl(warmup: int, total: int, min_lr_ratio: float, num_cycles: float) -> None:
    schedule = LrSchedule("cosine", warmup, total, min_lr_ratio, num_cycles)
    expected = _verl_lrs(verl_torch_functional.get_cosine_schedule_with_warmup, total + 5, num_warmup_steps=warmup,
                         num_training_steps=total, min_lr_ratio=min_lr_ratio, num_cycles=num_cycles)
    assert [schedule.ratio(step) for step in range(total + 5)] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_constant_schedule_matches_verl(warmup: int) -> None:
    schedule = LrSchedule("constant", warmup, 40)
    expected = _verl_lrs(verl_torch_functional.get_constant_schedule_with_warmup, 40, num_warmup_steps=warmup)
    assert [schedule.ratio(step) for step in range(40)] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("warmup_steps", "ratio", "total", "expected"),
    [(-1, 0.0, 100, 0), (None, 0.1, 100, 10), (0, 0.25, 30, 7), (20, 0.5, 100, 20)],
)
def test_lr_schedule_warmup_from_ratio_like_verl(
    warmup_steps: int | None, ratio: float, total: int, expected: int
) -> None:
    schedule = LrSchedule.from_settings("cosine", warmup_steps, ratio, total, None, 0.5)
    assert schedule.warmup_steps == expected
    assert schedule.min_lr_ratio == 0.0
