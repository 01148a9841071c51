"""Optional genotype channel: one-hot of the tokens of a genotype string, per position.

Graph features are generic; some measured latencies depend on things a graph does not show (the
NB201 tables were measured in PyTorch, where a ``none`` edge still launches a multiply-by-zero
kernel, but the graph has no node for it). When every training row comes from one search space
and its genotypes split into the same number of tokens, the encoder learns the vocabulary of each
position and adds a one-hot block to the graph-level features. Graphs of another space (or
without a genotype) get NaN in that block, which LightGBM treats as missing. Nothing here knows a
particular space: tokens are the pieces of the string between ``|``, ``,``, ``;``, ``:`` and
whitespace.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_SPLIT = re.compile(r"[|,;:\s]+")
MAX_POSITIONS = 256
MAX_VOCAB = 32


def tokenize(genotype: str) -> list[str]:
    return [t for t in _SPLIT.split(genotype) if t]


class GenotypeEncoder:
    """Per-position one-hot of genotype tokens for one space (empty when not applicable)."""

    def __init__(self, space: str | None = None, vocab: list[list[str]] | None = None) -> None:
        self.space = space
        self.vocab = vocab or []
        self._index = [{t: i for i, t in enumerate(v)} for v in self.vocab]
        self.width = sum(len(v) for v in self.vocab)

    @classmethod
    def fit(cls, spaces: list[str | None], genotypes: list[str | None]) -> GenotypeEncoder:
        """Learn the vocabulary when all rows share one space and one token count."""
        if not spaces or len(set(spaces)) != 1 or spaces[0] is None or None in genotypes:
            return cls()
        toks = [tokenize(str(g)) for g in genotypes]
        lengths = {len(t) for t in toks}
        if len(lengths) != 1 or not 0 < next(iter(lengths)) <= MAX_POSITIONS:
            return cls()
        vocab: list[list[str]] = []
        for pos in range(next(iter(lengths))):
            values = sorted({t[pos] for t in toks})
            if len(values) > MAX_VOCAB:
                return cls()
            vocab.append(values if len(values) > 1 else [])
        return cls(spaces[0], vocab)

    def encode(self, space: str | None, genotype: str | None) -> np.ndarray:
        """One-hot block (float32), NaN when the graph is not of the fitted space."""
        out = np.zeros(self.width, dtype=np.float32)
        if not self.width:
            return out
        toks = tokenize(genotype) if genotype and space == self.space else []
        if len(toks) != len(self.vocab):
            out[:] = np.nan
            return out
        off = 0
        for tok, idx, voc in zip(toks, self._index, self.vocab, strict=True):
            j = idx.get(tok)
            if j is not None:
                out[off + j] = 1.0
            off += len(voc)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenotypeEncoder:
        return cls(d.get("space"), d.get("vocab") or [])
