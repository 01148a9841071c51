"""Torch on one intra-op thread inside a block (the previous count is restored).

The models nasctl trains inside a command (proxy networks, the transfer model) are small: on a
shared machine a second OpenMP thread mostly waits at barriers (measured: many times slower
under load)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block; the previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
