"""The miniature's model and optimizer: the shared-prompt forward pass, decoding with a cache, AdamW."""

from __future__ import annotations

import pytest
import torch

from orchestrator.minigrpo.model import ModelSpec, TinyTransformer, _distinct_rows, generate, token_log_probs
from orchestrator.minigrpo.optim import AdamW
from orchestrator.minigrpo.task import VOCAB_SIZE, TaskSpec, make_prompts

SPEC = ModelSpec(vocab_size=VOCAB_SIZE, max_positions=22)


def _full_sequence_log_probs(model: TinyTransformer, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Log-probs from one pass over each whole prompt + response, with no sharing: the reference."""
    sequence = torch.cat([prompts, responses], dim=1)[:, :-1]
    log_softmax = torch.log_softmax(model(sequence)[:, prompts.shape[1] - 1 :], dim=-1)
    return log_softmax.gather(2, responses.unsqueeze(2)).squeeze(2)


@pytest.fixture
def grouped_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """16 prompts, each repeated 4 times (as rollout.n=4 does), shuffled, with random 12-token responses."""
    generator = torch.Generator().manual_seed(0)
    prompts = make_prompts(TaskSpec(), 16, generator).tokens.repeat_interleave(4, dim=0)
    order = torch.randperm(len(prompts), generator=generator)
    return prompts[order], torch.randint(0, VOCAB_SIZE, (len(prompts), 12), generator=generator)


def test_shared_prompt_pass_gives_the_full_pass_log_probs_and_gradients(
    grouped_batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    prompts, responses = grouped_batch
    model = TinyTransformer.seeded(SPEC, 0)
    shared, entropy = token_log_probs(model, prompts, responses, 1.0, with_entropy=True)
    full = _full_sequence_log_probs(model, prompts, responses)
    assert entropy is not None and entropy.shape == full.shape
    torch.testing.assert_close(shared, full, rtol=0, atol=1e-5)
    shared.sum().backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full.sum().backward()
    for (name, param), grad in zip(model.named_parameters(), shared_grads, strict=True):
        torch.testing.assert_close(grad, param.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_shared_prompt_pass_handles_one_token_responses(grouped_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    prompts, responses = grouped_batch
    model = TinyTransformer.seeded(SPEC, 1)
    shared, _ = token_log_probs(model, prompts, responses[:, :1], 1.0, with_entropy=False)
    torch.testing.assert_close(shared, _full_sequence_log_probs(model, prompts, responses[:, :1]), rtol=0, atol=1e-5)


def test_generate_log_probs_are_the_models_and_stop_at_eos(grouped_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    from orchestrator.minigrpo.task import response_lengths

    prompts, _ = grouped_batch
    model = TinyTransformer.seeded(SPEC, 2)
    rollout = generate(model, prompts, 12, 1.0, torch.Generator().manual_seed(3))
    recomputed = _full_sequence_log_probs(model, prompts, rollout.responses)
    torch.testing.assert_close(rollout.log_probs, recomputed * rollout.mask, rtol=0, atol=1e-5)
    assert torch.equal(rollout.mask.sum(dim=1), response_lengths(rollout.responses).float())
    again = generate(model, prompts, 12, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(again.responses, rollout.responses), "a seed gives the same responses"


def test_distinct_rows_maps_every_row_to_its_copy() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, VOCAB_SIZE, (10, 9), generator=generator).repeat(3, 1)
    unique, inverse = _distinct_rows(rows, VOCAB_SIZE)
    assert len(unique) == 10 and torch.equal(unique[inverse], rows)
    long_rows = torch.randint(0, 50, (6, 20), generator=generator).repeat(2, 1)  # 50^20 > 2^62: row-wise unique
    unique, inverse = _distinct_rows(long_rows, 50)
    assert len(unique) == 6 and torch.equal(unique[inverse], long_rows)


def _train_pair(weight_decay: float) -> tuple[torch.nn.Module, torch.nn.Module, AdamW, torch.optim.AdamW]:
    ours_model, torch_model = TinyTransformer.seeded(SPEC, 0), TinyTransformer.seeded(SPEC, 0)
    ours = AdamW(ours_model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=weight_decay)
    reference = torch.optim.AdamW(torch_model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=weight_decay,
                                  foreach=False)
    return ours_model, torch_model, ours, reference


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adamw_matches_torch_adamw_bit_for_bit(grouped_batch: tuple[torch.Tensor, torch.Tensor],
                                               weight_decay: float) -> None:
    prompts, responses = grouped_batch
    ours_model, torch_model, ours, reference = _train_pair(weight_decay)
    for step in range(6):
        for model, optimizer in ((ours_model, ours), (torch_model, reference)):
            optimizer.param_groups[0]["lr"] = 3e-3 * (step + 1) / 6
            optimizer.zero_grad()
            token_log_probs(model, prompts, responses, 1.0, with_entropy=False)[0].mean().backward()
            optimizer.step()
    for (name, mine), theirs in zip(ours_model.named_parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(mine, theirs), name


def test_adamw_reads_torch_adamw_state_and_continues_the_same(grouped_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    prompts, responses = grouped_batch
    ours_model, torch_model, ours, reference = _train_pair(0.01)

    def step(model: torch.nn.Module, optimizer: AdamW | torch.optim.AdamW) -> None:
        optimizer.zero_grad()
        token_log_probs(model, prompts, responses, 1.0, with_entropy=False)[0].mean().backward()
        optimizer.step()

    for _ in range(3):
        step(torch_model, reference)
    ours_model.load_state_dict(torch_model.state_dict())
    ours.load_state_dict(reference.state_dict())
    assert ours.state_dict()["param_groups"][0].keys() == reference.state_dict()["param_groups"][0].keys()
    step(torch_model, reference)
    step(ours_model, ours)
    assert all(torch.equal(a, b) for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True))
    with pytest.raises(ValueError, match="parameters"):
        AdamW(list(ours_model.parameters())[:3], lr=1e-3).load_state_dict(reference.state_dict())
