"""The verifiable task: the sum mod 10 of k digits, with an optional scratchpad of running sums.

A prompt holds k digits (k uniform in [min_digits, max_digits]) left-aligned in max_digits slots, PAD-filled,
then SEP. A response is an optional chain of running sums s2..sj (s_i = (d1 + ... + di) mod 10), then EQ, the
answer digit, EOS; at most `max_response_length` tokens. One forward pass of the tiny model can do one addition,
not two, so the chain is needed: cutting it short breaks correctness, as shortening reasoning does in an LLM.

Reward, on the 0..3 scale of the original runs: `format_reward` if the response is well formed, plus
`correct_reward` if it is well formed and its answer is right, minus `length_penalty` per token (EOS included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

N_DIGITS = 10
PAD, SEP, EQ, EOS = 10, 11, 12, 13
VOCAB_SIZE = 14


@dataclass(frozen=True)
class TaskSpec:
    """The task's shape and reward.

    Attributes:
        min_digits: Fewest digits in a prompt.
        max_digits: Most digits in a prompt; the prompt is max_digits + 1 tokens.
        max_response_length: Most tokens in a response; longer ones are cut and score as malformed.
        format_reward: Reward of a well-formed response.
        correct_reward: Extra reward of a well-formed response with the right answer.
        length_penalty: Reward subtracted per response token, end token included.
    """

    min_digits: int = 3
    max_digits: int = 8
    max_response_length: int = 12
    format_reward: float = 1.0
    correct_reward: float = 2.0
    length_penalty: float = 0.01

    @property
    def prompt_length(self) -> int:
        """Return the number of tokens in every prompt."""
        return self.max_digits + 1


@dataclass(frozen=True)
class Prompts:
    """A set of prompts with what is needed to score and to teach them.

    Attributes:
        tokens: (N, prompt_length) prompt tokens.
        chains: (N, max_digits - 1) running sums s2..s_max (PAD beyond each prompt's k).
        n_digits: (N,) number of digits k of each prompt.
        answers: (N,) the right answer digit.
    """

    tokens: torch.Tensor
    chains: torch.Tensor
    n_digits: torch.Tensor
    answers: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def select(self, index: torch.Tensor) -> Prompts:
        """Return the prompts at `index` (repeats allowed)."""
        return Prompts(self.tokens[index], self.chains[index], self.n_digits[index], self.answers[index])


@dataclass(frozen=True)
class Scores:
    """Per-response scoring.

    Attributes:
        reward: (M,) float reward.
        correct: (M,) bool, well formed with the right answer.
        well_formed: (M,) bool, digits, EQ, one digit, EOS.
        length: (M,) response length in tokens, EOS included (max_response_length when cut).
    """

    reward: torch.Tensor
    correct: torch.Tensor
    well_formed: torch.Tensor
    length: torch.Tensor


def make_prompts(spec: TaskSpec, n_prompts: int, generator: torch.Generator) -> Prompts:
    """Draw `n_prompts` prompts: k uniform in [min_digits, max_digits], digits uniform.

    Args:
        spec: The task's shape.
        n_prompts: How many prompts.
        generator: The random source (seeded by the task seed).

    Returns:
        The prompts with their chains and answers.
    """
    width = spec.max_digits
    n_digits = torch.randint(spec.min_digits, width + 1, (n_prompts,), generator=generator)
    digits = torch.randint(0, N_DIGITS, (n_prompts, width), generator=generator)
    slot = torch.arange(width).unsqueeze(0)
    used = slot < n_digits.unsqueeze(1)
    digits = torch.where(used, digits, torch.zeros_like(digits))
    sums = torch.cumsum(digits, dim=1) % N_DIGITS
    tokens = torch.cat([torch.where(used, digits, PAD), torch.full((n_prompts, 1), SEP)], dim=1)
    chains = torch.where(used[:, 1:], sums[:, 1:], PAD)
    answers = sums.gather(1, (n_digits - 1).unsqueeze(1)).squeeze(1)
    return Prompts(tokens=tokens, chains=chains, n_digits=n_digits, answers=answers)


def make_targets(prompts: Prompts, chain_lengths: torch.Tensor, max_response_length: int) -> torch.Tensor:
    """Build correct responses whose chain keeps its first `chain_lengths` running sums.

    Args:
        prompts: The prompts to answer.
        chain_lengths: (N,) how many running sums to write, each in [0, k - 1].
        max_response_length: Width of the result.

    Returns:
        (N, max_response_length) responses: chain, EQ, answer, EOS, then PAD.
    """
    n = len(prompts)
    width = max_response_length
    position = torch.arange(width).unsqueeze(0).expand(n, width)
    cut = chain_lengths.unsqueeze(1)
    chain = torch.full((n, width), PAD, dtype=torch.long)
    chain[:, : prompts.chains.shape[1]] = prompts.chains[:, :width]
    targets = torch.where(position < cut, chain, PAD)
    targets = torch.where(position == cut, EQ, targets)
    targets = torch.where(position == cut + 1, prompts.answers.unsqueeze(1), targets)
    return torch.where(position == cut + 2, EOS, targets)


def response_lengths(responses: torch.Tensor) -> torch.Tensor:
    """Return each response's length: up to and including the first EOS, else the full width."""
    width = responses.shape[1]
    is_end = responses == EOS
    first_end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), width - 1)
    return first_end + 1


def score(spec: TaskSpec, responses: torch.Tensor, answers: torch.Tensor) -> Scores:
    """Score responses: well formed = digits*, EQ, digit, EOS; correct = well formed and the right answer.

    Args:
        spec: The task's reward terms.
        responses: (M, L) sampled responses (anything after the first EOS is ignored).
        answers: (M,) the right answer of each response's prompt.

    Returns:
        The rewards and their parts.
    """
    m, width = responses.shape
    length = response_lengths(responses)
    last = (length - 1).unsqueeze(1)
    position = torch.arange(width).unsqueeze(0).expand(m, width)

    def token_at(offset: int) -> torch.Tensor:
        return responses.gather(1, (last - offset).clamp(min=0)).squeeze(1)

    is_digit = responses < N_DIGITS
    chain_ok = torch.where(position < last - 2, is_digit, True).all(dim=1)
    answer = token_at(1)
    well_formed = (
        (length >= 3) & (token_at(0) == EOS) & (token_at(1) < N_DIGITS) & (token_at(2) == EQ) & chain_ok
    )
    correct = well_formed & (answer == answers)
    reward = (
        spec.format_reward * well_formed.float()
        + spec.correct_reward * correct.float()
        - spec.length_penalty * length.float()
    )
    return Scores(reward=reward, correct=correct, well_formed=well_formed, length=length)
