"""The supervised warm start: a partly competent policy for GRPO to start from, cached per task and model.

Targets are well-formed responses; `full_chain_frac` of them write the whole chain of running sums and the rest cut it
at a uniform point, so the model also learns to answer early (and then often wrongly); `wrong_answer_frac` of them
get a wrong answer digit, so the policy starts out answering wrongly part of the time. The result depends only on
the task, model and warm-start settings, never on the trial seed, so every trial of a sweep shares one file:
`<cache>/warmstart-<hash>.pt`, written atomically under a file lock because several trials start at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock

from orchestrator.minigrpo import numerics
from orchestrator.minigrpo.model import ModelSpec, TinyTransformer
from orchestrator.minigrpo.optim import AdamW
from orchestrator.minigrpo.task import N_DIGITS, PAD, Prompts, TaskSpec, make_targets

FORMAT_VERSION = 3


@dataclass(frozen=True)
class WarmStartSpec:
    """The supervised phase.

    Attributes:
        steps: Optimizer steps (0 = the randomly initialised model).
        batch_size: Prompts per step.
        lr: Peak AdamW learning rate (cosine to 0 after a linear warmup).
        warmup_steps: Linear warmup length.
        full_chain_frac: Share of targets with the whole chain.
        wrong_answer_frac: Share of targets whose answer digit is replaced by a wrong one, so that the policy
            starts out answering wrongly part of the time and GRPO has correctness to gain.
        seed: Task seed: initial weights, batches and chain cuts.
    """

    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    full_chain_frac: float = 0.7
    wrong_answer_frac: float = 0.0
    seed: int = 0


def cache_key(task: TaskSpec, model: ModelSpec, warm: WarmStartSpec, n_train_prompts: int) -> str:
    """Return a short hash of everything the warm-started weights depend on.

    That includes the torch version, the number of torch threads and the CPU kernels in use (`numerics`): each
    changes the order of floating-point reductions, so a cache written under others would not be the weights this
    process would train.
    """
    blob = json.dumps(
        {"v": FORMAT_VERSION, "task": asdict(task), "model": asdict(model), "warm": asdict(warm), "n": n_train_prompts,
         "torch": torch.__version__, "threads": torch.get_num_threads(),
         "kernels": numerics.describe()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_train(
    cache: Path,
    task: TaskSpec,
    model_spec: ModelSpec,
    warm: WarmStartSpec,
    train_prompts: Prompts,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Return the warm-started state dict, training and caching it if no other run has yet.

    Args:
        cache: Cache folder (created if missing).
        task: The task.
        model_spec: The model's shape.
        warm: The supervised phase.
        train_prompts: Prompts to teach on.

    Returns:
        The state dict and whether it came from the cache.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"warmstart-{cache_key(task, model_spec, warm, len(train_prompts))}.pt"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return torch.load(path, weights_only=True), True
        state = train(task, model_spec, warm, train_prompts).state_dict()
        _save_atomic(state, path)
        return state, False


def train(task: TaskSpec, model_spec: ModelSpec, warm: WarmStartSpec, prompts: Prompts) -> TinyTransformer:
    """Run the supervised phase from a seeded initialisation and return the model."""
    generator = torch.Generator().manual_seed(warm.seed)
    model = TinyTransformer.seeded(model_spec, warm.seed)
    optimizer = AdamW(model.parameters(), lr=warm.lr, betas=(0.9, 0.999), weight_decay=0.0)
    for step in range(warm.steps):
        for group in optimizer.param_groups:
            group["lr"] = warm.lr * _warm_lr_ratio(step, warm)
        batch = prompts.select(torch.randint(0, len(prompts), (warm.batch_size,), generator=generator))
        chain_lengths = _chain_lengths(batch, warm.full_chain_frac, generator)
        targets = make_targets(batch, chain_lengths, task.max_response_length)
        if warm.wrong_answer_frac > 0:
            targets = _corrupt_answers(targets, chain_lengths, warm.wrong_answer_frac, generator)
        loss = _teacher_forced_loss(model, batch.tokens, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model


def _warm_lr_ratio(step: int, warm: WarmStartSpec) -> float:
    if step < warm.warmup_steps:
        return (step + 1) / warm.warmup_steps
    progress = (step - warm.warmup_steps) / max(1, warm.steps - warm.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _chain_lengths(batch: Prompts, full_chain_frac: float, generator: torch.Generator) -> torch.Tensor:
    full = batch.n_digits - 1
    cut = (torch.rand(len(batch), generator=generator) * full).long()
    keep_full = torch.rand(len(batch), generator=generator) < full_chain_frac
    return torch.where(keep_full, full, cut)


def _corrupt_answers(
    targets: torch.Tensor, chain_lengths: torch.Tensor, frac: float, generator: torch.Generator
) -> torch.Tensor:
    """Replace the answer digit of a `frac` share of `targets` by a uniformly drawn wrong digit."""
    rows = torch.arange(targets.shape[0])
    answers = targets[rows, chain_lengths + 1]
    shift = torch.randint(1, N_DIGITS, answers.shape, generator=generator)
    wrong = torch.rand(answers.shape, generator=generator) < frac
    corrupted = targets.clone()
    corrupted[rows, chain_lengths + 1] = torch.where(wrong, (answers + shift) % N_DIGITS, answers)
    return corrupted


def _teacher_forced_loss(model: TinyTransformer, prompts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    sequence = torch.cat([prompts, targets], dim=1)[:, :-1]
    logits = model(sequence)[:, prompts.shape[1] - 1 :, :]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


def _save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
