"""The language domain: sentences of a probabilistic context-free grammar, a small transformer encoder, and
the language versions of the shortcut and augmentation interventions.

Data (``dyck``): strings of a probabilistic context-free grammar of nested brackets with words, generated
here (no download; written by hand because no maintained package generates PCFG samples with the parse
statistics needed, and the grammar is eight lines)::

    S    -> ITEM | ITEM S                      (continue with probability ``p_continue``)
    ITEM -> word                               (probability 1 - p_open; word uniform over 8 words)
          | "(" S ")" | "[" S "]"              (probability p_open, either bracket type equally)

The class of a sentence is the depth of its deepest bracket (1 to ``n_classes``): a property of the parse
tree, not of any single token or of the bag of tokens (sentences of every class contain every bracket
type and many brackets side by side). Sentences are drawn until each class has ``n_samples / n_classes``
of at most ``max_len`` tokens (rejection sampling, deeper ones are rarer), then split stratified.

Encoding: each row is ``[slot, t_1, ..., t_n, PAD, ...]`` of length ``max_len + 1`` (token ids stored as
float32, like every input of the zoo). Position 0 is the marker slot of the shortcut intervention; without
a shortcut it holds the neutral token ``NO_MARK``, so models with and without the shortcut read inputs of
the same shape.

Model (``transformer``): token + learned position embeddings, a learned class token (CLS) prepended,
``depth`` pre-norm transformer blocks (:class:`tasks.zoo.vision.TransformerBlock`), a final LayerNorm and
the logits on the CLS state. Padding is an ordinary token (no attention mask): every sentence is padded to
the same length, so the model learns to ignore it. Compared layers: the CLS state after each block, the
final LayerNorm, the logits.

Interventions (ReSi's, adapted to sentences):

* label randomisation: as in every domain;
* shortcut: the marker slot holds a class token ``MARK_c`` that names the true class with probability
  ``p`` and a uniformly random class otherwise; probe sentences carry uninformative markers;
* augmentation (``intervention.input_noise`` = r_max, a rate in [0, 1]): per training sentence a rate
  r ~ U(0, r_max) is drawn and each word token is replaced with probability r by a uniformly random word.
  Brackets are never touched, so the noise keeps the label (it is an augmentation, not label noise).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tasks.zoo.architectures import architecture
from tasks.zoo.datasets import Dataset, _split, dataset
from tasks.zoo.interventions import DOMAIN_INTERVENTIONS, DomainInterventions
from tasks.zoo.vision import TransformerBlock

# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------

PAD = 0
NO_MARK = 1
#: marker tokens MARK_c = MARK_BASE + c, one per class (at most MAX_CLASSES)
MARK_BASE = 2
MAX_CLASSES = 6
OPEN = {"(": MARK_BASE + MAX_CLASSES, "[": MARK_BASE + MAX_CLASSES + 2}
CLOSE = {"(": MARK_BASE + MAX_CLASSES + 1, "[": MARK_BASE + MAX_CLASSES + 3}
WORD_BASE = MARK_BASE + MAX_CLASSES + 4
N_WORDS = 8
VOCAB_SIZE = WORD_BASE + N_WORDS


def _sentence(rng: np.random.Generator, p_continue: float, p_open: float, cap: int) -> tuple[list[int], int]:
    """One sentence of the grammar (token ids) and the depth of its deepest bracket. Generation stops
    early once the sentence is longer than ``cap`` tokens (it will be rejected anyway)."""
    tokens: list[int] = []
    deepest = 0
    # an explicit stack instead of recursion: ("S", depth) expands a sequence, ("close", id) emits a token
    stack: list[tuple[str, int]] = [("S", 0)]
    while stack and len(tokens) <= cap:
        kind, value = stack.pop()
        if kind == "close":
            tokens.append(value)
            continue
        depth = value
        if rng.random() < p_continue:
            stack.append(("S", depth))  # the rest of the sequence, expanded after this item
        if rng.random() < p_open:
            bracket = "(" if rng.random() < 0.5 else "["
            tokens.append(OPEN[bracket])
            deepest = max(deepest, depth + 1)
            stack.append(("close", CLOSE[bracket]))
            stack.append(("S", depth + 1))
        else:
            tokens.append(WORD_BASE + int(rng.integers(N_WORDS)))
    return tokens, deepest


def _dyck_shape(n_samples: int = 1500, max_len: int = 24, n_classes: int = 4, p_continue: float = 0.6,
                p_open: float = 0.35, probe_fraction: float = 0.2, **_: object) -> tuple[tuple[int, ...], int]:
    if not isinstance(n_classes, int) or not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"data.n_classes must be an integer in [2, {MAX_CLASSES}], got {n_classes!r}")
    if not isinstance(max_len, int) or max_len < 2 * n_classes + 1:
        raise ValueError(f"data.max_len must be an integer >= 2 x n_classes + 1 = {2 * n_classes + 1} "
                         f"(the deepest class needs that many tokens), got {max_len!r}")
    if not isinstance(n_samples, int) or n_samples < 4 * n_classes:
        raise ValueError(f"data.n_samples must be an integer >= 4 x n_classes = {4 * n_classes}, got {n_samples!r}")
    for key, value in (("p_continue", p_continue), ("p_open", p_open), ("probe_fraction", probe_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"data.{key} must be in (0, 1), got {value}")
    return (max_len + 1,), n_classes


@dataset("dyck", shape=_dyck_shape, domain="language")
def dyck(n_samples: int = 1500, max_len: int = 24, n_classes: int = 4, p_continue: float = 0.6, p_open: float = 0.35,
         probe_fraction: float = 0.2, split_seed: int = 0, generator_seed: int = 0) -> Dataset:
    """Sentences of the nested-bracket grammar (module docstring), class = deepest bracket depth − 1,
    ``n_samples / n_classes`` per class, at most ``max_len`` tokens; stratified split."""
    _dyck_shape(n_samples, max_len, n_classes, p_continue, p_open, probe_fraction)
    rng = np.random.default_rng(generator_seed)
    per_class = math.ceil(n_samples / n_classes)
    rows: list[list[int]] = [[] for _ in range(n_classes)]
    x = np.zeros((per_class * n_classes, max_len + 1), dtype=np.int64)
    y = np.zeros(per_class * n_classes, dtype=np.int64)
    filled = 0
    for _ in range(2000 * n_samples):  # bounded: the default grammar fills every class in a few thousand draws
        tokens, deepest = _sentence(rng, p_continue, p_open, max_len)
        c = deepest - 1
        if not 0 <= c < n_classes or len(tokens) > max_len or len(rows[c]) >= per_class:
            continue
        rows[c].append(filled)
        x[filled, 0] = NO_MARK
        x[filled, 1 : len(tokens) + 1] = tokens
        y[filled] = c
        filled += 1
        if filled == len(y):
            break
    else:
        short = {c + 1: per_class - len(r) for c, r in enumerate(rows) if len(r) < per_class}
        raise ValueError(f"data (dyck): the grammar did not yield enough sentences of bracket depth {short} within "
                         f"max_len={max_len}; raise max_len or p_open")
    return _split("dyck", x, y, probe_fraction, split_seed)


# --------------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------------


def add_marker_token(x: np.ndarray, y: np.ndarray, rate: float, n_classes: int, seed: int) -> np.ndarray:
    """Shortcut (ReSi test 4) for sentences: the marker slot (position 0) gets the token ``MARK_c``, with
    c the true class with probability ``rate`` and a uniformly random class otherwise."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"intervention.shortcut must be in [0, 1] or null, got {rate}")
    if n_classes > MAX_CLASSES:
        raise ValueError(f"the language shortcut has marker tokens for {MAX_CLASSES} classes, not {n_classes}")
    rng = np.random.default_rng(seed)
    informative = rng.random(y.shape[0]) < rate
    cls = np.where(informative, y, rng.integers(0, n_classes, size=y.shape[0]))
    out = x.copy()
    out[:, 0] = MARK_BASE + cls
    return out


def word_noise(x: torch.Tensor, rate_max: float, generator: torch.Generator) -> torch.Tensor:
    """Augmentation (ReSi test 5) for sentences: per sentence r ~ U(0, rate_max), each word token replaced
    with probability r by a uniformly random word; brackets, markers and padding are kept."""
    if not 0.0 <= rate_max <= 1.0:
        raise ValueError(f"intervention.input_noise is a token-replacement rate for language data: must be in "
                         f"[0, 1], got {rate_max}")
    if rate_max == 0:
        return x
    rate = torch.rand(x.shape[0], generator=generator) * rate_max
    replace = torch.rand(x.shape, generator=generator) < rate.view(-1, 1)
    words = torch.randint(WORD_BASE, VOCAB_SIZE, x.shape, generator=generator).to(x.dtype)
    is_word = x >= WORD_BASE
    return torch.where(replace.to(x.device) & is_word, words.to(x.device), x)


DOMAIN_INTERVENTIONS["language"] = DomainInterventions(add_marker_token, lambda shape, n_classes: tuple(shape),
                                                       word_noise)


# --------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------


class TokenEmbedding(nn.Module):
    """Token ids (float-coded) -> embeddings, a learned CLS token prepended, learned positions added:
    (N, T) -> (N, 1 + T, dim)."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB_SIZE, dim)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.positions = nn.Parameter(torch.empty(1, 1 + length, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # this module's own tensors (``tokens`` resets itself); training.train calls it under the init seed
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.round().long()
        if ids.min() < 0 or ids.max() >= VOCAB_SIZE:
            raise ValueError(f"token ids must be in [0, {VOCAB_SIZE}), got [{int(ids.min())}, {int(ids.max())}]")
        embedded = self.tokens(ids)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), embedded], dim=1) + self.positions


class TextEncoder(nn.Module):
    """Transformer encoder for token sequences: embedding, ``depth`` blocks, final LayerNorm ``norm`` on
    the CLS state, ``logits``."""

    def __init__(self, length: int, n_classes: int, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.embed = TokenEmbedding(length, dim)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.logits = nn.Linear(dim, n_classes)
        self.simbench_layers = [f"blocks.{i}.readout" for i in range(depth)] + ["norm", "logits"]
        self.simbench_preactivations: list[str] = []  # GELU and attention: no ReLU activation regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.embed(x))
        return self.logits(self.norm(tokens[:, 0]))


@architecture("transformer")
def transformer(input_shape: tuple[int, ...], n_classes: int, dim: int = 32, depth: int = 3, heads: int = 4,
                mlp_dim: int = 64) -> TextEncoder:
    """Small transformer encoder for token sequences (inputs of shape (length,)); CLS read out per block."""
    if len(input_shape) != 1:
        raise ValueError(f"transformer needs token sequences (length,), got input shape {input_shape}")
    for key, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"arch.{key} must be an integer >= 1, got {value!r}")
    if dim % heads:
        raise ValueError(f"arch.dim ({dim}) must be divisible by arch.heads ({heads})")
    return TextEncoder(input_shape[0], n_classes, dim, depth, heads, mlp_dim)
