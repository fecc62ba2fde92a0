"""The policy: a tiny causal transformer, its sampler and its per-token log-probs.

With the recipe's d_model=64, 2 layers, 4 heads, MLP 4x and 22 learned positions it has 103,310 parameters.
Both the sampler and the log-prob pass run each distinct prompt once and share its keys and values among the
`rollout.n` responses to it; decoding writes keys and values into buffers allocated once per batch.
"""

from __future__ import annotations

import math
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


class KVCache:
    """One block's keys and values of the positions already run, so later positions can attend to them.

    Without `capacity` new keys are concatenated (autograd flows through them: a shared prompt prefix in training);
    with it they are written into a buffer allocated once (decoding, no autograd).
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append (B, H, T, D) keys and values; return all of them so far."""
        new = keys.shape[2]
        if self._keys is None or self._values is None:
            if self.capacity is None:
                self._keys, self._values = keys, values
            else:
                shape = (keys.shape[0], keys.shape[1], self.capacity, keys.shape[3])
                self._keys, self._values = keys.new_empty(shape), values.new_empty(shape)
                self._keys[:, :, :new], self._values[:, :, :new] = keys, values
        elif self.capacity is None:
            self._keys = torch.cat([self._keys, keys], dim=2)
            self._values = torch.cat([self._values, values], dim=2)
        else:
            self._keys[:, :, self.length : self.length + new] = keys
            self._values[:, :, self.length : self.length + new] = values
        self.length += new
        return self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def select(self, rows: Rows, capacity: int | None = None) -> KVCache:
        """Return a cache holding the keys and values of `rows` (repeats allowed), with a buffer of `capacity`."""
        assert self._keys is not None and self._values is not None, "select() needs a filled cache"
        picked = KVCache(capacity)
        picked.extend(rows.take(self._keys[:, :, : self.length]), rows.take(self._values[:, :, : self.length]))
        return picked


@dataclass(frozen=True)
class Rows:
    """Which distinct prompt each row of a batch is: `inverse[i]`; `copies` when the batch is each prompt repeated
    `copies` times in a row (GRPO's layout), which is taken by broadcasting, and summed back in the backward pass,
    instead of gathered and scattered."""

    inverse: torch.Tensor
    copies: int | None

    @classmethod
    def of(cls, inverse: torch.Tensor, n_distinct: int) -> Rows:
        """Return the rows that `inverse` (each row's index among `n_distinct`) describes."""
        copies, extra = divmod(len(inverse), n_distinct)
        grouped = extra == 0 and torch.equal(inverse, torch.arange(n_distinct).repeat_interleave(copies))
        return cls(inverse, copies if grouped else None)

    def take(self, distinct: torch.Tensor) -> torch.Tensor:
        """Return, along dim 0, each row's entry of `distinct` (one entry per distinct prompt)."""
        if self.copies is None:
            return distinct.index_select(0, self.inverse)
        shape = (distinct.shape[0], self.copies, *distinct.shape[1:])
        return distinct.unsqueeze(1).expand(shape).flatten(0, 1)


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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Return the block's output for x (B, T, d).

        With `cache`, x holds the positions after those cached; they attend to the cached ones and to each other
        causally, and their keys and values join the cache.
        """
        batch, length, width = x.shape
        normed = F.layer_norm(x, (width,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
        q, k, v = F.linear(normed, self.qkv.weight, self.qkv.bias).split(width, dim=2)
        heads = (batch, length, self.n_heads, width // self.n_heads)
        q, k, v = q.view(heads).transpose(1, 2), k.view(heads).transpose(1, 2), v.view(heads).transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.extend(k, v)
        if past == 0 or length == 1:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=past == 0 and length > 1)
        else:
            attended = _attend_after(q, k, v, past)
        # Modules' parameters are used through torch.nn.functional: nn.Module.__call__ costs more than these
        # small matrices do while decoding one position at a time.
        x = x + F.linear(attended.transpose(1, 2).reshape(batch, length, width), self.proj.weight, self.proj.bias)
        normed = F.layer_norm(x, (width,), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        hidden = F.gelu(F.linear(normed, self.fc1.weight, self.fc1.bias))
        return x + F.linear(hidden, self.fc2.weight, self.fc2.bias)


def _attend_after(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """Causal attention of (B, H, T, D) queries that follow `past` cached positions, to those and to each other.

    Two batched products with the mask added as -inf: on these short sequences, forward and backward take about
    half the time of the fused kernel (which an explicit mask sends to its slower path).
    """
    batch, heads, length, dim = q.shape
    total = k.shape[2]
    bias = torch.zeros(length, total).masked_fill_(
        ~torch.ones(length, total, dtype=torch.bool).tril(past), float("-inf")
    )
    scores = torch.baddbmm(bias, q.reshape(batch * heads, length, dim),
                           k.reshape(batch * heads, total, dim).transpose(1, 2), alpha=dim**-0.5)
    return torch.bmm(scores.softmax(dim=-1), v.reshape(batch * heads, total, dim)).view(batch, heads, length, dim)


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

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Return next-token logits (B, T, V) for tokens (B, T).

        Args:
            tokens: The tokens, or with `caches` only the tokens after those already cached.
            caches: One cache per block (empty ones before the first call), filled for decoding.
        """
        return F.linear(self.hidden(tokens, caches), self.head.weight, self.head.bias)

    def hidden(self, tokens: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Return the normalised last hidden states (B, T, d) that `forward` maps to logits."""
        start = caches[0].length if caches else 0
        x = F.embedding(tokens, self.tok.weight) + self.pos.weight[start : start + tokens.shape[1]]
        for index, block in enumerate(self.blocks):
            x = block.forward(x, None if caches is None else caches[index])
        return F.layer_norm(x, (self.spec.d_model,), self.norm.weight, self.norm.bias, self.norm.eps)

    def new_caches(self) -> list[KVCache]:
        """Return one empty, growing cache per block."""
        return [KVCache() for _ in self.blocks]


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


def _run_prompts(
    model: TinyTransformer, prompts: torch.Tensor, capacity: int | None = None
) -> tuple[torch.Tensor, list[KVCache]]:
    """Run each distinct prompt once (GRPO repeats each `rollout.n` times) and hand its result to every copy.

    Returns:
        Each row's hidden state at its last prompt position (M, d), and per block a cache of each row's prompt
        keys and values (a buffer of `capacity` positions, or growing and differentiable when None).
    """
    unique, inverse = _distinct_rows(prompts, model.spec.vocab_size)
    rows = Rows.of(inverse, len(unique))
    caches = model.new_caches()
    last = model.hidden(unique, caches)[:, -1]
    return rows.take(last), [cache.select(rows, capacity) for cache in caches]


def _distinct_rows(tokens: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the distinct rows of `tokens`, in order of first appearance, and each row's index among them.

    A row is read as one base-`vocab_size` number when that fits in 62 bits, so a 1-D unique replaces the
    row-wise one, which compares rows one pair at a time.
    """
    if tokens.shape[1] * math.log2(vocab_size) > 62:
        codes = torch.unique(tokens, dim=0, return_inverse=True)[1]
    else:
        codes = (tokens.to(torch.int64) * vocab_size ** torch.arange(tokens.shape[1], dtype=torch.int64)).sum(dim=1)
    _, inverse = torch.unique(codes, return_inverse=True)
    n_rows = len(inverse)
    first = torch.full((int(inverse.max()) + 1,), n_rows, dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(n_rows), reduce="amin")
    order = first.argsort()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return tokens[first[order]], rank[inverse]


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
    with torch.inference_mode():  # no autograd bookkeeping at all: decoding is mostly per-operation overhead
        rollout = _decode(model, prompts, max_length, temperature, generator, greedy)
    return Rollout(rollout.responses.clone(), rollout.mask.clone(), rollout.log_probs.clone())


def _decode(
    model: TinyTransformer,
    prompts: torch.Tensor,
    max_length: int,
    temperature: float,
    generator: torch.Generator,
    greedy: bool,
) -> Rollout:
    last, caches = _run_prompts(model, prompts, capacity=prompts.shape[1] + max_length)
    logits = F.linear(last, model.head.weight, model.head.bias)
    finished = torch.zeros(prompts.shape[0], dtype=torch.bool)
    tokens, masks, log_probs = [], [], []
    for position in range(max_length):
        if position > 0:
            logits = model(tokens[-1].unsqueeze(1), caches)[:, -1, :]
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

    Logits are divided by the sampling temperature, as verl's actor does. Each distinct prompt is run once and
    its keys and values shared by its responses (gradients from every copy add up), which gives what one pass
    over each prompt + response would, at a fraction of the cost when `rollout.n` > 1.
    """
    last, caches = _run_prompts(model, prompts)
    hidden = [last.unsqueeze(1)]
    if responses.shape[1] > 1:
        hidden.append(model.hidden(responses[:, :-1], caches))
    logits = model.head(torch.cat(hidden, dim=1)) / temperature
    log_softmax = torch.log_softmax(logits, dim=-1)
    chosen = log_softmax.gather(2, responses.unsqueeze(2)).squeeze(2)
    if not with_entropy:
        return chosen, None
    entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
    return chosen, entropy
