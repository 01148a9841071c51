"""Torch on a set number of intra-op threads inside a block (the previous count is restored).

The models nasctl trains inside a command (proxy networks, the transfer model) are small: on a
shared machine a second OpenMP thread mostly waits at barriers (measured: many times slower
under load), so they train on :func:`one_thread`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` intra-op threads inside the block; the previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> AbstractContextManager[None]:
    """torch on one intra-op thread inside the block."""
    return torch_threads(1)
