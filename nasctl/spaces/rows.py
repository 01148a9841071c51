"""Raw node rows of whole families of nodes at once (numpy), equal to
:func:`nasctl.arch.arrays.node_row` of the nodes :class:`~nasctl.arch.graph.GraphBuilder` makes.

For spaces with too many distinct layer shapes to build each node (``mbconv``). Every function
takes integer arrays (broadcast together) for square ``(1, C, H, H)`` tensors and returns
``(n, N_RAW)`` float64 rows; the float operations are those of ``node_row`` in the same order, so
the values are bit-identical (``tests/test_space_arrays.py`` checks them against ``node_row``).
"""

from __future__ import annotations

import numpy as np

from nasctl.arch.arrays import N_RAW
from nasctl.arch.graph import OP_INDEX


def _rows(
    op: np.ndarray | float,
    k_area: np.ndarray | float,
    stride: np.ndarray | float,
    groups: np.ndarray | float,
    c_in: np.ndarray | float,
    c_out: np.ndarray | float,
    spatial: np.ndarray | float,
    macs: np.ndarray | float,
    params: np.ndarray | float,
    read: np.ndarray | float,
    out: np.ndarray | float,
) -> np.ndarray:
    cols = np.broadcast_arrays(
        *(
            np.asarray(v, dtype=np.float64)
            for v in (op, k_area, stride, groups, c_in, c_out, spatial, macs, params, read, out)
        )
    )
    assert len(cols) == N_RAW
    return np.stack(cols, axis=-1).reshape(-1, N_RAW)


def conv_rows(
    c_in: np.ndarray | int,
    c_out: np.ndarray | int,
    kernel: np.ndarray | int,
    stride: np.ndarray | int,
    groups: np.ndarray | int,
    h_in: np.ndarray | int,
    h_out: np.ndarray | int,
    bias: bool,
) -> np.ndarray:
    """``b.conv`` (square int kernel) of a ``(1, c_in, h_in, h_in)`` input."""
    c_in, c_out, kernel, stride, groups, h_in, h_out = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.int64) for v in (c_in, c_out, kernel, stride, groups, h_in, h_out))
    )
    op = np.where(
        groups == 1,
        OP_INDEX["conv"],
        np.where(groups == c_in, OP_INDEX["dwconv"], OP_INDEX["gconv"]),
    )
    out_el_i = c_out * h_out * h_out
    out_el = out_el_i.astype(np.float64)
    cin_f, cout_f = c_in.astype(np.float64), c_out.astype(np.float64)
    k_area = (kernel * kernel).astype(np.float64)
    g = groups.astype(np.float64)
    per_group = cin_f / g
    macs = out_el * per_group * k_area
    params = cout_f * per_group * k_area + (cout_f if bias else 0.0)
    return _rows(
        op,
        k_area,
        stride,
        g,
        cin_f,
        cout_f,
        h_out * h_out,
        macs,
        params,
        c_in * h_in * h_in,
        out_el_i,
    )


def batchnorm_rows(c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``b.batchnorm`` of ``(1, c, h, h)``."""
    c, h = np.broadcast_arrays(np.asarray(c, np.int64), np.asarray(h, np.int64))
    el = c * h * h
    cf = c.astype(np.float64)
    return _rows(OP_INDEX["batchnorm"], 1.0, 1.0, 1.0, cf, cf, h * h, 0.0, 2.0 * cf, el, el)


def elementwise_rows(op: np.ndarray | str, c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One-input shape-keeping op (``b.act``; ``op`` a name or an array of op indices)."""
    c, h = np.broadcast_arrays(np.asarray(c, np.int64), np.asarray(h, np.int64))
    code = OP_INDEX[op] if isinstance(op, str) else op
    el = c * h * h
    return _rows(code, 1.0, 1.0, 1.0, c, c, h * h, 0.0, 0.0, el, el)


def add_rows(c: np.ndarray, h: np.ndarray, n_inputs: int = 2) -> np.ndarray:
    """``b.add`` of ``n_inputs`` tensors ``(1, c, h, h)``."""
    c, h = np.broadcast_arrays(np.asarray(c, np.int64), np.asarray(h, np.int64))
    el = c * h * h
    return _rows(OP_INDEX["add"], 1.0, 1.0, 1.0, c, c, h * h, 0.0, 0.0, n_inputs * el, el)


def global_pool_rows(c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``b.global_pool`` (average) of ``(1, c, h, h)``."""
    c, h = np.broadcast_arrays(np.asarray(c, np.int64), np.asarray(h, np.int64))
    el = c * h * h
    return _rows(OP_INDEX["globalavgpool"], 1.0, 1.0, 1.0, c, c, 1.0, el, 0.0, el, c)


def scale_rows(c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``b.mul`` of ``(1, c, h, h)`` by ``(1, c, 1, 1)`` (squeeze-excitation)."""
    c, h = np.broadcast_arrays(np.asarray(c, np.int64), np.asarray(h, np.int64))
    el = c * h * h
    return _rows(OP_INDEX["mul"], 1.0, 1.0, 1.0, c, c, h * h, 0.0, 0.0, el + c, el)
