"""Exact deduplication of repeated rows: graphs of one search space repeat the same fused groups
(and so the same feature rows) many times, and a model whose answer is a function of the row
needs to run once per distinct row.

Rows are keyed by a 64-bit hash of their bytes (:func:`mixed` scrambles each 64-bit word, so
values differing only in high bits, such as floats of different exponents, hash apart) and every
row is then compared with the row standing for its key, so the result is exact: a collision only
turns deduplication off. :func:`factorize` numbers keys by one sort (``np.unique`` with inverse
and index is several times slower).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIX = np.uint64(0xBF58476D1CE4E5B9)
POLY = np.uint64(0x94D049BB133111EB)


def mixed(v: np.ndarray) -> np.ndarray:
    """A bijective scramble of 64-bit patterns (so that values differing only in high bits,
    such as floats of different exponents, hash apart)."""
    u = v.view(np.uint64).copy()  # a C-contiguous copy, also of a strided column
    u ^= u >> np.uint64(31)
    u *= MIX
    u ^= u >> np.uint64(29)
    return u


def factorize(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, in ascending value order; first index of each code) by a sort."""
    n = h.size
    order = np.argsort(h)
    hs = h[order]
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    codes = np.empty(n, dtype=np.int64)
    codes[order] = np.cumsum(new) - 1
    first = np.full(int(new.sum()), n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    return codes, first


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row of each distinct row of ``X``, id of each row's distinct row): rows
    with one id are bit-equal (a hash of the rows' bytes, then checked row for row)."""
    X = np.ascontiguousarray(X)
    n = X.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    words = X.reshape(n, -1).view(np.uint8)
    pad = (-words.shape[1]) % 8
    if pad:
        words = np.hstack([words, np.zeros((n, pad), np.uint8)])
    words = np.ascontiguousarray(words).view(np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    for j in range(words.shape[1]):
        h *= POLY
        h += mixed(words[:, j])
    codes, reps = factorize(h)
    if not np.array_equal(words, words[reps[codes]]):  # a hash collision: no dedupe
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    return reps, codes


def predict_distinct(booster: Any, X: np.ndarray, **kw: Any) -> np.ndarray:
    """``booster.predict(X, **kw)`` computed on the distinct rows of ``X`` only (the same
    values: a tree model's answer is a function of the row)."""
    reps, codes = distinct_rows(X)
    if reps.size == X.shape[0]:
        return np.asarray(booster.predict(X, **kw))
    return np.asarray(booster.predict(X[reps], **kw))[codes]
