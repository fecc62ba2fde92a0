"""The policy: a tiny causal transformer, its sampler and its per-token log-probs.

With the recipe's d_model=64, 2 layers, 4 heads, MLP 4x and 22 learned positions it has 103,310 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.minigrpo.task import EOS, PAD


@dataclass(frozen=True)
class ModelSpec:
    """The transformer's shape.

    Attributes:
        vocab_size: Number of tokens.
        max_positions: Learned positions (prompt + response + 1).
        d_model: Width.
        n_layers: Transformer blocks.
        n_heads: Attention heads.
        mlp_ratio: MLP width as a multiple of d_model.
    """

    vocab_size: int
    max_positions: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4


class _Block(nn.Module):
    """A pre-norm transformer block: causal self-attention then a GELU MLP, each with a residual."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        width = spec.d_model
        self.n_heads = spec.n_heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, spec.mlp_ratio * width)
        self.fc2 = nn.Linear(spec.mlp_ratio * width, width)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Return the block's output for x (B, T, d).

        With `cache` ([] on the first call, then the list it filled) keys and values of earlier positions are
        kept, and x may hold only the new positions.
        """
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        heads = (batch, length, self.n_heads, width // self.n_heads)
        q, k, v = (t.view(heads).transpose(1, 2) for t in (q, k, v))
        causal = True
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
                causal = length > 1
            cache[:] = [k, v]
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """A GPT-style causal language model over the task's vocabulary."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.tok = nn.Embedding(spec.vocab_size, spec.d_model)
        self.pos = nn.Embedding(spec.max_positions, spec.d_model)
        self.blocks = nn.ModuleList(_Block(spec) for _ in range(spec.n_layers))
        self.norm = nn.LayerNorm(spec.d_model)
        self.head = nn.Linear(spec.d_model, spec.vocab_size)

    @classmethod
    def seeded(cls, spec: ModelSpec, seed: int) -> TinyTransformer:
        """Return a model with PyTorch's default initialisation drawn under `seed` (the global RNG is untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(spec)

    def forward(self, tokens: torch.Tensor, caches: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Return next-token logits (B, T, V) for tokens (B, T).

        Args:
            tokens: The tokens, or with `caches` only the tokens after those already cached.
            caches: One list per block ([] before the first call), filled with keys and values for decoding.
        """
        start = caches[0][0].shape[2] if caches and caches[0] else 0
        positions = torch.arange(start, start + tokens.shape[1])
        x = self.tok(tokens) + self.pos(positions)
        for index, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[index])
        return self.head(self.norm(x))


def n_parameters(model: nn.Module) -> int:
    """Return the number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def load_rounded(target: TinyTransformer, source: TinyTransformer, dtype: str) -> None:
    """Copy `source`'s weights into `target`, rounded through `dtype` ("bfloat16", "float16") or exact ("float32").

    The rounded copy computes in float32: it reproduces a bf16 (8-bit mantissa) or fp16 (11-bit) inference engine
    sampling for an fp32 trainer as far as the weights go, which is the train-inference mismatch that lets the
    original settings collapse.
    """
    rounding = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    with torch.no_grad():
        for dst, src in zip(target.parameters(), source.parameters(), strict=True):
            if rounding is not None:
                dst.copy_(src.to(rounding).to(torch.float32))
            else:
                dst.copy_(src)


@dataclass(frozen=True)
class Rollout:
    """Sampled responses.

    Attributes:
        responses: (M, L) tokens, PAD after EOS; L is the longest response of the batch.
        mask: (M, L) float, 1 on response tokens up to and including EOS.
        log_probs: (M, L) the sampler's log-probs of the sampled tokens (0 where masked).
    """

    responses: torch.Tensor
    mask: torch.Tensor
    log_probs: torch.Tensor


@torch.no_grad()
def generate(
    model: TinyTransformer,
    prompts: torch.Tensor,
    max_length: int,
    temperature: float,
    generator: torch.Generator,
    greedy: bool = False,
) -> Rollout:
    """Sample a response per prompt until EOS or `max_length` tokens.

    Args:
        model: The sampler.
        prompts: (M, P) prompt tokens.
        max_length: Most response tokens.
        temperature: Softmax temperature (ignored when greedy).
        generator: The random source; it advances by one draw per token position.
        greedy: Take the most likely token instead of sampling.

    Returns:
        The responses, their mask and the sampler's log-probs.
    """
    caches: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    step_input = prompts
    finished = torch.zeros(prompts.shape[0], dtype=torch.bool)
    tokens, masks, log_probs = [], [], []
    for _ in range(max_length):
        logits = model(step_input, caches)[:, -1, :]
        scaled = torch.log_softmax(logits / (1.0 if greedy else temperature), dim=-1)
        if greedy:
            token = scaled.argmax(dim=-1)
        else:
            token = torch.multinomial(scaled.exp(), 1, generator=generator).squeeze(1)
        alive = ~finished
        token = torch.where(alive, token, PAD)
        tokens.append(token)
        masks.append(alive.float())
        log_probs.append(torch.where(alive, scaled.gather(1, token.unsqueeze(1)).squeeze(1), 0.0))
        finished = finished | (token == EOS)
        step_input = token.unsqueeze(1)
        if bool(finished.all()):
            break
    return Rollout(torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(log_probs, 1))


def token_log_probs(
    model: TinyTransformer,
    prompts: torch.Tensor,
    responses: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the model's log-probs (M, L) of `responses` after `prompts`, and optionally the entropies (M, L).

    Logits are divided by the sampling temperature, as verl's actor does.
    """
    sequence = torch.cat([prompts, responses], dim=1)[:, :-1]
    logits = model(sequence)[:, prompts.shape[1] - 1 :, :] / temperature
    log_softmax = torch.log_softmax(logits, dim=-1)
    chosen = log_softmax.gather(2, responses.unsqueeze(2)).squeeze(2)
    if not with_entropy:
        return chosen, None
    entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
    return chosen, entropy
