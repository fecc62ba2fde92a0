"""The GRPO loop, step for step as verl's RayPPOTrainer.fit runs it, on one CPU process.

Per step: take the next `train_batch_size` prompts, sample `rollout.n` responses each from the rollout copy of
the policy (bf16-rounded weights by default), score them, recompute old log-probs and entropy with the fp32
policy (with one PPO epoch of one mini-batch, that pass is also the update's forward pass), apply verl's rollout
correction (importance weights, rejection mask and their metrics, or in bypass mode the sampler's log-probs as the
old ones), get reference log-probs for the KL loss, compute group-normalised advantages (zero on rejected tokens),
run `ppo_epochs` passes of mini-batch updates (PPO-clip, entropy bonus, KL loss, grad clipping), advance the LR
schedule, save a checkpoint and validate when due, then log one record. Validation runs before training (step 0,
or the resumed step) when `val_before_train`, and at every `test_freq` step and the last one; it runs in a thread
beside the next steps (on the step's own weights), and its step's record is logged once it is in.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from omegaconf import DictConfig

from orchestrator.minigrpo import checkpoint
from orchestrator.minigrpo.algos import (
    LrSchedule,
    agg_loss,
    grpo_advantages,
    kl_penalty,
    policy_loss,
    reinforce_loss,
)
from orchestrator.minigrpo.config import DATA_SOURCE, cache_dir, env_vars, loggers, lr_schedule_type
from orchestrator.minigrpo.model import ModelSpec, TinyTransformer, generate, load_rounded, token_log_probs
from orchestrator.minigrpo.optim import AdamW
from orchestrator.minigrpo.rollout_corr import Correction, correct, probs_diff_metrics
from orchestrator.minigrpo.task import VOCAB_SIZE, Prompts, TaskSpec, make_prompts, score
from orchestrator.minigrpo.tracking import Tracking
from orchestrator.minigrpo.warmstart import WarmStartSpec, load_or_train



class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; the run stops where it is."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class _Run:
    """The live state of one run."""

    cfg: DictConfig
    task: TaskSpec
    train_prompts: Prompts
    val_prompts: Prompts
    policy: TinyTransformer
    sampler: TinyTransformer
    reference: TinyTransformer | None
    optimizer: AdamW
    schedule: LrSchedule
    rollout_rng: torch.Generator
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    scheduler_steps: int = 0
    timing: dict[str, float] = field(default_factory=dict)


def train(cfg: DictConfig) -> int:
    """Run GRPO as `cfg` says (a config from `config.compose`), logging as verl does.

    Returns:
        The last completed step.

    Raises:
        Interrupted: SIGTERM or SIGINT arrived (the metrics file holds every completed step).
    """
    previous = _install_signal_handlers()
    try:
        os.environ.update(env_vars(cfg))
        torch.set_num_threads(cfg.mini.num_threads)
        torch.manual_seed(cfg.actor_rollout_ref.actor.fsdp_config.seed)
        run = _build(cfg)
        tracking = Tracking(cfg.trainer.project_name, cfg.trainer.experiment_name, loggers(cfg))
        validation = _Validation(run, tracking)
        try:
            _resume(run)
            if cfg.trainer.val_before_train:
                validation.start({}, run.step)
            while run.step < run.total_steps:
                run.step += 1
                metrics = _step(run)
                if _due(cfg.trainer.test_freq, run):
                    validation.start(metrics, run.step)
                else:
                    validation.log(metrics, run.step)
            validation.flush()
        except Interrupted:
            validation.flush()  # every completed step's record is written before the run stops
            raise
        finally:
            validation.close()
            tracking.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return run.step


def _install_signal_handlers() -> dict[int, Any]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, stop)
    return previous


def _build(cfg: DictConfig) -> _Run:
    task = _task_spec(cfg)
    model_spec = ModelSpec(
        vocab_size=VOCAB_SIZE,
        max_positions=task.prompt_length + task.max_response_length + 1,
        d_model=cfg.mini.model.d_model,
        n_layers=cfg.mini.model.n_layers,
        n_heads=cfg.mini.model.n_heads,
        mlp_ratio=cfg.mini.model.mlp_ratio,
    )
    task_rng = torch.Generator().manual_seed(cfg.mini.task.seed)
    train_prompts = make_prompts(task, cfg.mini.task.n_train_prompts, task_rng)
    val_prompts = make_prompts(task, cfg.mini.task.n_val_prompts, task_rng)
    warm_state, _ = load_or_train(cache_dir(cfg), task, model_spec, _warm_spec(cfg), train_prompts)
    policy, sampler = TinyTransformer(model_spec), TinyTransformer(model_spec)
    policy.load_state_dict(warm_state)
    sampler.requires_grad_(False)
    reference = None
    if cfg.actor_rollout_ref.actor.use_kl_loss:
        reference = TinyTransformer(model_spec)
        reference.load_state_dict(warm_state)
        reference.requires_grad_(False)
    optim = cfg.actor_rollout_ref.actor.optim
    optimizer = AdamW(policy.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    steps_per_epoch = len(train_prompts) // cfg.data.train_batch_size
    total = steps_per_epoch * cfg.trainer.total_epochs
    if cfg.trainer.total_training_steps is not None:
        total = min(total, cfg.trainer.total_training_steps)
    schedule = LrSchedule.from_settings(
        lr_schedule_type(cfg), optim.lr_warmup_steps, optim.lr_warmup_steps_ratio, total, optim.min_lr_ratio,
        optim.num_cycles,
    )
    return _Run(
        cfg=cfg, task=task, train_prompts=train_prompts, val_prompts=val_prompts, policy=policy, sampler=sampler,
        reference=reference, optimizer=optimizer, schedule=schedule,
        rollout_rng=torch.Generator().manual_seed(cfg.actor_rollout_ref.rollout.seed),
        total_steps=total, steps_per_epoch=steps_per_epoch,
    )


def _task_spec(cfg: DictConfig) -> TaskSpec:
    task = cfg.mini.task
    return TaskSpec(
        min_digits=task.min_digits,
        max_digits=task.max_digits,
        max_response_length=cfg.data.max_response_length,
        format_reward=float(task.format_reward),
        correct_reward=float(task.correct_reward),
        length_penalty=float(task.length_penalty),
    )


def _warm_spec(cfg: DictConfig) -> WarmStartSpec:
    warm = cfg.mini.warm_start
    return WarmStartSpec(
        steps=warm.steps,
        batch_size=warm.batch_size,
        lr=float(warm.lr),
        warmup_steps=warm.warmup_steps,
        full_chain_frac=float(warm.full_chain_frac),
        wrong_answer_frac=float(warm.wrong_answer_frac),
        seed=cfg.mini.task.seed,
    )


def _resume(run: _Run) -> None:
    folder = _resume_folder(run.cfg)
    if folder is None:
        _set_lr(run)
        return
    state = checkpoint.load(folder)
    run.policy.load_state_dict(state.model)
    run.optimizer.load_state_dict(state.optimizer)
    run.scheduler_steps = state.scheduler_steps
    run.rollout_rng.set_state(state.rng["rollout"])
    torch.set_rng_state(state.rng["torch"])
    run.step = state.step
    _set_lr(run)
    print(f"(minigrpo) resumed from {folder} at step {run.step}", flush=True)


def _resume_folder(cfg: DictConfig) -> Path | None:
    mode = cfg.trainer.resume_mode
    if mode == "disable":
        return None
    if mode == "auto":
        return checkpoint.latest(Path(cfg.trainer.default_local_dir))
    folder = Path(cfg.trainer.resume_from_path)
    if not (folder / "actor").is_dir():
        raise FileNotFoundError(f"trainer.resume_from_path has no checkpoint: {folder}")
    return folder


def _set_lr(run: _Run) -> float:
    lr = float(run.cfg.actor_rollout_ref.actor.optim.lr) * run.schedule.ratio(run.scheduler_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


@contextmanager
def _timer(run: _Run, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        run.timing[name] = run.timing.get(name, 0.0) + time.perf_counter() - start


def _batch_indices(run: _Run, step: int) -> tuple[torch.Tensor, int]:
    """Return the prompt indices of `step` (1-based) and its epoch: drop-last batches of a per-epoch shuffle."""
    epoch, position = divmod(step - 1, run.steps_per_epoch)
    size = run.cfg.data.train_batch_size
    seed = run.cfg.data.seed
    if run.cfg.data.shuffle and seed is not None:
        order = torch.randperm(len(run.train_prompts), generator=torch.Generator().manual_seed(_derive(seed, epoch)))
    else:
        order = torch.arange(len(run.train_prompts))
    return order[position * size : (position + 1) * size], epoch


def _derive(seed: int, *parts: int) -> int:
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 62) - 1)


def _step(run: _Run) -> dict[str, Any]:
    cfg, actor, rollout_cfg = run.cfg, run.cfg.actor_rollout_ref.actor, run.cfg.actor_rollout_ref.rollout
    run.timing = {}
    metrics: dict[str, Any] = {}
    with _timer(run, "step"):
        indices, epoch = _batch_indices(run, run.step)
        batch = run.train_prompts.select(indices.repeat_interleave(rollout_cfg.n))
        with _timer(run, "gen"):
            load_rounded(run.sampler, run.policy, rollout_cfg.dtype)
            rollout = generate(
                run.sampler, batch.tokens, cfg.data.max_response_length, rollout_cfg.temperature, run.rollout_rng
            )
        scores = score(run.task, rollout.responses, batch.answers)
        with _timer(run, "old_log_prob"):
            forward = _old_log_prob(run, batch.tokens, rollout.responses)
            old_log_prob, entropy = forward.log_prob.detach(), forward.entropy.detach()
            metrics["actor/entropy"] = float(agg_loss(entropy, rollout.mask, actor.loss_agg_mode))
        metrics.update(probs_diff_metrics(old_log_prob, rollout.log_probs, rollout.mask))
        mask, is_weights = rollout.mask, None
        if cfg.algorithm.rollout_correction.bypass_mode:
            old_log_prob = rollout.log_probs
        else:
            correction = _correct(cfg.algorithm.rollout_correction, old_log_prob, rollout.log_probs, rollout.mask)
            mask, is_weights = correction.mask, correction.weights
            metrics.update(correction.metrics)
        ref_log_prob = None
        if run.reference is not None:
            with _timer(run, "ref"), torch.no_grad():
                ref_log_prob, _ = token_log_probs(
                    run.reference, batch.tokens, rollout.responses, rollout_cfg.temperature, with_entropy=False
                )
        with _timer(run, "adv"):
            advantages = grpo_advantages(scores.reward, rollout_cfg.n, cfg.algorithm.norm_adv_by_std_in_grpo)
            token_advantages = advantages.unsqueeze(1) * mask
        with _timer(run, "update_actor"):
            metrics.update(_update(run, batch.tokens, rollout.responses, mask, old_log_prob,
                                   ref_log_prob, token_advantages, is_weights, forward))
            run.scheduler_steps += 1
            metrics["actor/lr"] = _set_lr(run)
        if _due(cfg.trainer.save_freq, run):
            with _timer(run, "save_checkpoint"):
                _save(run, epoch)
    metrics["training/global_step"] = run.step
    metrics["training/epoch"] = epoch
    metrics.update(_data_metrics(run, scores, token_advantages, rollout.mask, batch.tokens.shape[1]))
    metrics.update({f"timing_s/{name}": seconds for name, seconds in run.timing.items()})
    metrics.update(_throughput(run, rollout.mask, batch.tokens.shape[1]))
    return metrics


@dataclass(frozen=True)
class _Forward:
    """The policy's log-probs and entropies of a batch, with their autograd graph when the update will reuse them."""

    log_prob: torch.Tensor
    entropy: torch.Tensor


def _old_log_prob(run: _Run, prompts: torch.Tensor, responses: torch.Tensor) -> _Forward:
    """Return the policy's log-probs and entropies before the update (verl's compute_log_prob).

    With one PPO epoch of one mini-batch (the recipe's setting) the update's forward pass sees the same weights and
    the same batch, so it is run once, with autograd, and the update reuses it; otherwise it runs without autograd
    and every mini-batch makes its own.
    """
    actor = run.cfg.actor_rollout_ref.actor
    mini_batch = actor.ppo_mini_batch_size * run.cfg.actor_rollout_ref.rollout.n
    reuse = actor.ppo_epochs == 1 and mini_batch >= prompts.shape[0]
    with torch.set_grad_enabled(reuse):
        log_prob, entropy = token_log_probs(
            run.policy, prompts, responses, run.cfg.actor_rollout_ref.rollout.temperature, with_entropy=True
        )
    assert entropy is not None
    return _Forward(log_prob, entropy)


def _due(freq: int, run: _Run) -> bool:
    return freq > 0 and (run.step == run.total_steps or run.step % freq == 0)


def _update(
    run: _Run,
    prompts: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    old_log_prob: torch.Tensor,
    ref_log_prob: torch.Tensor | None,
    advantages: torch.Tensor,
    is_weights: torch.Tensor | None = None,
    forward: _Forward | None = None,
) -> dict[str, float]:
    actor = run.cfg.actor_rollout_ref.actor
    n_samples = prompts.shape[0]
    mini_batch = actor.ppo_mini_batch_size * run.cfg.actor_rollout_ref.rollout.n
    if forward is not None and forward.log_prob.requires_grad:
        return _mini_batch_update(run, prompts, responses, mask, old_log_prob, ref_log_prob, advantages, is_weights,
                                  forward)
    collected: dict[str, list[float]] = defaultdict(list)
    for epoch in range(actor.ppo_epochs):
        order = _sample_order(run, n_samples, epoch)
        for start in range(0, n_samples, mini_batch):
            rows = order[start : start + mini_batch]
            part_ref = None if ref_log_prob is None else ref_log_prob[rows]
            part_weights = None if is_weights is None else is_weights[rows]
            for key, value in _mini_batch_update(
                run, prompts[rows], responses[rows], mask[rows], old_log_prob[rows], part_ref, advantages[rows],
                part_weights,
            ).items():
                collected[key].append(value)
    return {key: sum(values) / len(values) for key, values in collected.items()}


def _sample_order(run: _Run, n_samples: int, epoch: int) -> torch.Tensor:
    actor = run.cfg.actor_rollout_ref.actor
    if not actor.shuffle:
        return torch.arange(n_samples)
    generator = torch.Generator().manual_seed(_derive(actor.data_loader_seed, run.step, epoch))
    return torch.randperm(n_samples, generator=generator)


def _mini_batch_update(
    run: _Run,
    prompts: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    old_log_prob: torch.Tensor,
    ref_log_prob: torch.Tensor | None,
    advantages: torch.Tensor,
    is_weights: torch.Tensor | None = None,
    forward: _Forward | None = None,
) -> dict[str, float]:
    actor = run.cfg.actor_rollout_ref.actor
    temperature = run.cfg.actor_rollout_ref.rollout.temperature
    with_entropy = actor.entropy_coeff != 0
    if forward is None:
        log_prob, entropy = token_log_probs(run.policy, prompts, responses, temperature, with_entropy=with_entropy)
    else:
        log_prob, entropy = forward.log_prob, forward.entropy if with_entropy else None
    loss, metrics = _policy_loss(run, old_log_prob, log_prob, advantages, mask, is_weights)
    if entropy is not None:
        entropy_loss = agg_loss(entropy, mask, actor.loss_agg_mode)
        loss = loss - actor.entropy_coeff * entropy_loss
        metrics["actor/entropy_loss"] = float(entropy_loss.detach())
    if ref_log_prob is not None:
        kl_loss = agg_loss(kl_penalty(log_prob, ref_log_prob, actor.kl_loss_type), mask, actor.loss_agg_mode)
        loss = loss + actor.kl_loss_coef * kl_loss
        metrics["actor/kl_loss"] = float(kl_loss.detach())
        metrics["actor/kl_coef"] = float(actor.kl_loss_coef)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.policy.parameters(), max_norm=actor.optim.clip_grad)
    if torch.isfinite(grad_norm):
        run.optimizer.step()
    else:
        run.optimizer.zero_grad(set_to_none=True)
    metrics["actor/grad_norm"] = float(grad_norm)
    return metrics


def _policy_loss(
    run: _Run,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    is_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return the policy loss and its metrics: verl's vanilla PPO loss, or in bypass mode its bypass-mode loss.

    In bypass mode `old_log_prob` is the sampler's; the correction is computed per mini-batch from the current
    policy against it, its rejection mask applies to the policy loss only, and its IS weights only to `reinforce`.
    """
    actor = run.cfg.actor_rollout_ref.actor
    corr = run.cfg.algorithm.rollout_correction
    metrics: dict[str, float] = {}
    loss_type = "ppo_clip"
    if corr.bypass_mode:
        with torch.no_grad():
            correction = _correct(corr, log_prob.detach(), old_log_prob, mask)
        mask, loss_type = correction.mask, corr.loss_type
        is_weights = correction.weights if loss_type == "reinforce" else None
        metrics.update(correction.metrics)
    if loss_type == "reinforce":
        loss, ppo_kl = reinforce_loss(old_log_prob, log_prob, advantages, mask, actor.loss_agg_mode, is_weights)
        metrics.update({"actor/pg_loss": float(loss.detach()), "actor/ppo_kl": ppo_kl})
        return loss, metrics
    clip_low = actor.clip_ratio if actor.clip_ratio_low is None else actor.clip_ratio_low
    clip_high = actor.clip_ratio if actor.clip_ratio_high is None else actor.clip_ratio_high
    pg = policy_loss(old_log_prob, log_prob, advantages, mask, clip_low, clip_high, actor.clip_ratio_c,
                     actor.loss_agg_mode, is_weights)
    metrics.update({"actor/pg_loss": float(pg.loss.detach()), "actor/pg_clipfrac": pg.clipfrac,
                    "actor/ppo_kl": pg.ppo_kl, "actor/pg_clipfrac_lower": pg.clipfrac_lower})
    return pg.loss, metrics


def _correct(corr: DictConfig, train_log_prob: torch.Tensor, rollout_log_prob: torch.Tensor,
             mask: torch.Tensor) -> Correction:
    return correct(train_log_prob, rollout_log_prob, mask, corr.rollout_is, corr.rollout_is_threshold,
                   corr.rollout_is_batch_normalize, corr.rollout_rs, corr.rollout_rs_threshold)


class _Validation:
    """Evaluations beside training: each runs in a thread of its own while the next steps train.

    An evaluation samples from a rollout copy of the weights taken when it starts, with a generator seeded the
    same at every evaluation, so it gives exactly what it would inline. Records are logged in step order: those
    of the steps after an evaluation wait, with its own, until it is in (a few steps later).
    """

    def __init__(self, run: _Run, tracking: Tracking) -> None:
        self._run = run
        self._tracking = tracking
        self._sampler = TinyTransformer(run.sampler.spec).requires_grad_(False)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minigrpo-validation")
        self._queue: deque[tuple[int, dict[str, Any], Future[tuple[dict[str, float], float]] | None]] = deque()

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log `step`'s record, after those waiting for an evaluation."""
        self._queue.append((step, metrics, None))
        self.flush(wait=False)

    def start(self, metrics: dict[str, Any], step: int) -> None:
        """Start evaluating the current weights; `step`'s record (`metrics`) is logged with the results."""
        self.flush(wait=True)  # one evaluation at a time: its rollout copy is reused
        load_rounded(self._sampler, self._run.policy, self._run.cfg.actor_rollout_ref.rollout.dtype)
        self._queue.append((step, metrics, self._pool.submit(_timed_validate, self._run, self._sampler)))

    def flush(self, wait: bool = True) -> None:
        """Log the records whose evaluations are in (with `wait`, all of them, waiting for the one under way)."""
        while self._queue:
            step, metrics, future = self._queue[0]
            if future is not None:
                if not (wait or future.done()):
                    return
                results, seconds = future.result()
                metrics.update(results)
                if "timing_s/step" in metrics:
                    metrics["timing_s/testing"] = seconds
            self._queue.popleft()
            self._tracking.log(metrics, step=step)

    def close(self) -> None:
        """Stop the thread (an evaluation under way is waited for; records not flushed are dropped)."""
        self._queue.clear()
        self._pool.shutdown(wait=True)


def _timed_validate(run: _Run, sampler: TinyTransformer) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    results = _validate(run, sampler)
    return results, time.perf_counter() - start


def _validate(run: _Run, sampler: TinyTransformer) -> dict[str, float]:
    """Sample every held-out prompt `val_kwargs.n` times from `sampler`, with the same seed every time."""
    rollout_cfg = run.cfg.actor_rollout_ref.rollout
    val = rollout_cfg.val_kwargs
    prompts = run.val_prompts.select(torch.arange(len(run.val_prompts)).repeat_interleave(val.n))
    generator = torch.Generator().manual_seed(run.cfg.mini.val_seed)
    rollout = generate(sampler, prompts.tokens, run.cfg.data.max_response_length, val.temperature, generator,
                       greedy=not val.do_sample)
    scores = score(run.task, rollout.responses, prompts.answers)
    suffix = f"mean@{val.n}"
    return {
        f"val-core/{DATA_SOURCE}/reward/{suffix}": float(scores.reward.mean()),
        f"val-aux/{DATA_SOURCE}/correct/{suffix}": float(scores.correct.float().mean()),
        f"val-aux/{DATA_SOURCE}/well_formed/{suffix}": float(scores.well_formed.float().mean()),
        f"val-aux/{DATA_SOURCE}/response_length/{suffix}": float(scores.length.float().mean()),
    }


def _save(run: _Run, epoch: int) -> None:
    state = checkpoint.TrainingState(
        step=run.step,
        model=run.policy.state_dict(),
        optimizer=run.optimizer.state_dict(),
        scheduler_steps=run.scheduler_steps,
        rng={"rollout": run.rollout_rng.get_state(), "torch": torch.get_rng_state()},
        data={"epoch": epoch, "index": (run.step - 1) % run.steps_per_epoch + 1},
    )
    checkpoint.save(Path(run.cfg.trainer.default_local_dir), state, run.cfg.trainer.max_actor_ckpt_to_keep)


def _data_metrics(
    run: _Run, scores: Any, advantages: torch.Tensor, mask: torch.Tensor, prompt_length: int
) -> dict[str, float]:
    valid = advantages[mask.bool()]
    length = scores.length.float()
    reward = scores.reward
    metrics = {}
    for name in ("score", "rewards"):
        metrics.update({f"critic/{name}/mean": float(reward.mean()), f"critic/{name}/max": float(reward.max()),
                        f"critic/{name}/min": float(reward.min())})
    for name in ("advantages", "returns"):
        metrics.update({f"critic/{name}/mean": float(valid.mean()), f"critic/{name}/max": float(valid.max()),
                        f"critic/{name}/min": float(valid.min())})
    metrics.update({
        "response_length/mean": float(length.mean()),
        "response_length/max": float(length.max()),
        "response_length/min": float(length.min()),
        "response_length/clip_ratio": float((scores.length == run.cfg.data.max_response_length).float().mean()),
        "prompt_length/mean": float(prompt_length),
    })
    return metrics


def _throughput(run: _Run, mask: torch.Tensor, prompt_length: int) -> dict[str, float]:
    tokens = float(mask.sum()) + prompt_length * mask.shape[0]
    seconds = run.timing["step"]
    return {"perf/total_num_tokens": tokens, "perf/time_per_step": seconds, "perf/throughput": tokens / seconds}
