"""``MBConvSpace.graph_arrays``: node arrays of many MBConv networks without building graphs.

A network is stem, blocks, head (:mod:`nasctl.spaces.mbconv`), all as segments of
:mod:`nasctl.spaces.templates`. Per (resolution, width) *pair*, a builder run of one block
per stage gives each stage's block contexts (input channels and size, output channels, stride for
the first block and for the later ones); stems and heads (per activation) are cut out of real
builder output. A block is one of eight structures (expansion or not, SE or not, residual or
not; cut out of real blocks; times four activations, which pick rows) whose node rows come
from a dense table per pair computed with numpy (:mod:`nasctl.spaces.rows`): :data:`CELL`
rows per (context, expansion, kernel). Parsing is the only per-genotype Python (and little of
it); everything after it is vectorized.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from nasctl.arch import arrays
from nasctl.arch.graph import OP_INDEX, GraphBuilder, conv_out_hw, same_pads
from nasctl.errors import SpaceError
from nasctl.spaces import mbconv_blocks as mb
from nasctl.spaces import rows as R
from nasctl.spaces.templates import SETUP_KEY, ChainStore, harvest, space_store


class MBConvSpace(Protocol):
    """What this module needs of :class:`nasctl.spaces.mbconv.MBConvSpace` (which imports it)."""

    num_classes: int

    @property
    def resolutions(self) -> Sequence[int]: ...

    def parse(self, genotype: str) -> Any: ...


#: Node slots of a block, in graph order (node id suffixes).
SLOTS = (
    "expand", "expand_bn", "expand_act", "dw", "dw_bn", "dw_act", "se/pool", "se/fc1", "se/act",
    "se/fc2", "se/gate", "se/mul", "project", "project_bn", "add",
)  # fmt: skip
N_SLOTS = len(SLOTS)
N_STAGES = len(mb.STAGE_CHANNELS)
N_E, N_K, N_A = len(mb.EXPANSIONS), len(mb.KERNELS), len(mb.ACTS)
N_CTX = 2 * N_STAGES  # per pair: stage i first block (2i) and later blocks (2i + 1)
#: every valid block token -> (kernel index, expansion index, se)
TOKENS: dict[str, tuple[int, int, int]] = {
    f"k{k}e{e}{'s' if se else ''}": (ki, ei, int(se))
    for ki, k in enumerate(mb.KERNELS)
    for ei, e in enumerate(mb.EXPANSIONS)
    for se in (False, True)
}
_TOK_ID = {t: i for i, t in enumerate(TOKENS)}
_TOK = np.array(list(TOKENS.values()), np.int64)  # (24, 3)
_ACT_ID = {a: i for i, a in enumerate(mb.ACTS)}
_EXPANSION = np.array(mb.EXPANSIONS, np.int64)
#: slots whose rows depend on the block's activation (the others do not)
ACT_SLOTS = ("expand_act", "dw_act", "se/gate")
_FIXED = [i for i, name in enumerate(SLOTS) if name not in ACT_SLOTS]
CELL = len(_FIXED) + N_A * len(ACT_SLOTS)  # rows per (context, expansion, kernel)


def _row_pos(slot: int, act: int) -> int:
    """Row of a node slot within its (context, expansion, kernel) cell of the block table:
    fixed slots first, then each activation-dependent slot once per activation."""
    name = SLOTS[slot]
    if name in ACT_SLOTS:
        return len(_FIXED) + N_A * ACT_SLOTS.index(name) + act
    return _FIXED.index(slot)


def _store(space: MBConvSpace) -> ChainStore:
    config = (space.num_classes, tuple(space.resolutions))
    return space_store(space, config, _block_structs, max_structs=10_000, max_rows=600_000)


def _block_structs(store: ChainStore) -> np.ndarray:
    """Structure ids [expands, se, residual, act] of the block kinds, cut out of real blocks
    (the activation only picks rows)."""
    out = np.zeros((2, 2, 2, N_A), np.int64)
    for ex in (0, 1):
        for se in (0, 1):
            for res in (0, 1):
                b = GraphBuilder("block", (1, 16, 8, 8))
                cout = 16 if res else 24
                y = mb.mbconv_block(
                    b, b.input, cout, 3, 6 if ex else 1, 1, bool(se), "relu", prefix="/p"
                )
                nodes = b.build([y]).nodes
                piece = harvest(nodes, b.input, y, graph_input=False)
                slots = [SLOTS.index(n.id[len("/p/") :]) for n in nodes]
                for a in range(N_A):
                    out[ex, se, res, a] = store.add_struct(
                        piece.src,
                        piece.dst,
                        piece.out,
                        piece.depth,
                        row_local=[_row_pos(i, a) for i in slots],
                    )
    return out


def _pair_info(
    space: MBConvSpace, store: ChainStore, pairs: list[tuple[int, str]]
) -> list[dict[str, np.ndarray]]:
    """Per (resolution, width): row base of its block table, residual flag per context, stems
    and heads per activation; cached, the new pairs' tables made in one numpy pass."""
    new: dict[tuple[int, str], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for r, width in pairs:
        if ("pair", r, width) in store.cache or (r, width) in new:
            continue
        new[(r, width)] = _skeleton(space, store, r, width)
    if new:
        ctx = np.concatenate([c for c, _ in new.values()])  # (P * N_CTX, 4)
        base = store.add_rows(_block_rows(*ctx.T))
        per_pair = N_CTX * N_E * N_K * CELL
        for i, (pair, (_, info)) in enumerate(new.items()):
            info["base"] = np.asarray(base + i * per_pair, np.int64)
            store.cache[("pair", *pair)] = info
    return [store.cache[("pair", r, w)] for r, w in pairs]


def _skeleton(
    space: MBConvSpace, store: ChainStore, r: int, width: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Contexts (c_in, h, c_out, stride) of one pair from a builder run of one k3e1 block per
    stage, and its stems and heads cut out of real builder output."""
    mult = float(width)
    b = GraphBuilder("skeleton", (1, 3, r, r))
    x = mb.stem(b, mult, "relu")
    ctx = []
    for i, (c_stage, s) in enumerate(zip(mb.STAGE_CHANNELS, mb.STAGE_STRIDES, strict=True)):
        cout = mb.make_divisible(c_stage * mult)
        _, cin, h, _ = b.shape(x)
        x = mb.mbconv_block(b, x, cout, 3, 1, s, False, "relu", prefix=f"/s{i}")
        ctx += [(cin, h, cout, s), (cout, b.shape(x)[2], cout, 1)]
    final = b.shape(x)
    stems, heads = [], []
    for act in mb.ACTS:
        sb = GraphBuilder("stem", (1, 3, r, r))
        y = mb.stem(sb, mult, act)
        stems.append(store.add_piece(harvest(sb.build([y]).nodes, sb.input, y, graph_input=True)))
        hb = GraphBuilder("head", final)
        y = mb.head(hb, hb.input, mult, act, space.num_classes)
        heads.append(store.add_piece(harvest(hb.build([y]).nodes, hb.input, y, graph_input=False)))
    c = np.array(ctx, np.int64)
    info = {
        "residual": ((c[:, 3] == 1) & (c[:, 0] == c[:, 2])).astype(np.int64),
        "stem": np.array(stems, np.int64),  # (act, 2): structure, row base
        "head": np.array(heads, np.int64),
    }
    return c, info


def _block_rows(cin: np.ndarray, h: np.ndarray, cout: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Dense rows of the nodes ``mbconv_block`` makes in each context, as ``(N_CTX * N_E *
    N_K * CELL, N_RAW)``: per (context, expansion, kernel), :data:`CELL` rows (see
    :func:`_row_pos`)."""
    idx = np.indices((cin.size, N_E, N_K)).reshape(3, -1)
    cx, e, k = idx[0], idx[1], idx[2]
    c_in, hh, c_out, st = cin[cx], h[cx], cout[cx], s[cx]
    mid = c_in * _EXPANSION[e]
    kern = np.array(mb.KERNELS, np.int64)[k]
    h2 = np.array(
        [
            [conv_out_hw(hv, hv, kv, sv, same_pads(kv))[0] for kv in mb.KERNELS]
            for hv, sv in zip(h.tolist(), s.tolist(), strict=True)
        ],
        np.int64,
    )[cx, k]
    red = np.array(
        [[mb.make_divisible(c * ev / 4) for ev in mb.EXPANSIONS] for c in cin.tolist()], np.int64
    )[cx, e]
    one = np.ones_like(mid)
    fixed = {  # slots whose rows do not depend on the activation
        "expand": R.conv_rows(c_in, mid, 1, 1, 1, hh, hh, False),
        "expand_bn": R.batchnorm_rows(mid, hh),
        "dw": R.conv_rows(mid, mid, kern, st, mid, hh, h2, False),
        "dw_bn": R.batchnorm_rows(mid, h2),
        "se/pool": R.global_pool_rows(mid, h2),
        "se/fc1": R.conv_rows(mid, red, 1, 1, 1, one, one, True),
        "se/act": R.elementwise_rows("relu", red, one),
        "se/fc2": R.conv_rows(red, mid, 1, 1, 1, one, one, True),
        "se/mul": R.scale_rows(mid, h2),
        "project": R.conv_rows(mid, c_out, 1, 1, 1, h2, h2, False),
        "project_bn": R.batchnorm_rows(c_out, h2),
        "add": R.add_rows(c_out, h2),
    }
    act_op = np.array([OP_INDEX[x] for x in mb.ACTS], np.int64)
    gate_op = np.array([OP_INDEX[mb.gate_for(x)] for x in mb.ACTS], np.int64)
    per_act = {  # (n, N_A) rows
        "expand_act": (act_op, mid, hh),
        "dw_act": (act_op, mid, h2),
        "se/gate": (gate_op, mid, one),
    }
    out = np.empty((cx.size, CELL, arrays.N_RAW))
    for name, rows in fixed.items():
        out[:, _row_pos(SLOTS.index(name), 0)] = rows
    for name, (ops, c, hw) in per_act.items():
        p = _row_pos(SLOTS.index(name), 0)
        rows = R.elementwise_rows(ops[None, :], c[:, None], hw[:, None])
        out[:, p : p + N_A] = rows.reshape(cx.size, N_A, arrays.N_RAW)
    return out.reshape(-1, arrays.N_RAW)


def _pairs(space: MBConvSpace) -> list[tuple[int, str]]:
    return [(r, w) for r in space.resolutions for w in mb.WIDTHS]


_SEP = np.zeros(256, np.int8)
_SEP[[ord("|"), ord(":"), ord(","), ord("\n")]] = [1, 2, 3, 4]
_HEAD, _ACT, _TOKEN = 0, 1, 2  # piece kinds (code // 1000)
#: allowed (kind, next kind) -> separator code between them
_RULES = np.zeros((3, 3), np.int8)
_RULES[_HEAD, _ACT], _RULES[_ACT, _TOKEN] = 1, 2
_RULES[_TOKEN, _TOKEN], _RULES[_TOKEN, _ACT], _RULES[_TOKEN, _HEAD] = 3, 1, 4

Parsed = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _parse_all(space: MBConvSpace, genotypes: Sequence[str]) -> Parsed:
    """(pair index per genotype, (B, 7) act ids, blocks per stage, token id per block): all
    genotypes at once (one split, one lookup pass, vectorized checks); any doubt falls back to
    one genotype at a time, which raises the parser's error."""
    lut = {f"r{r}-w{w}": i for i, (r, w) in enumerate(_pairs(space))}
    lut.update({a: 1000 + i for a, i in _ACT_ID.items()})
    lut.update({t: 2000 + i for t, i in _TOK_ID.items()})
    try:
        text = "\n".join(genotypes)
        pieces = text.replace("|", "\n").replace(":", "\n").replace(",", "\n").split("\n")
        codes = np.fromiter(map(lut.__getitem__, pieces), np.int64, len(pieces))
    except (KeyError, TypeError):
        return _parse_each(space, genotypes, lut)
    raw = np.frombuffer(text.encode(), np.uint8)
    seps = _SEP[raw]
    seps = seps[seps > 0]
    kind = codes // 1000
    n = len(genotypes)
    heads = np.flatnonzero(kind == _HEAD)
    ok = (
        kind[0] == _HEAD and kind[-1] == _TOKEN and heads.size == n
        and np.array_equal(_RULES[kind[:-1], kind[1:]], seps)
    )  # fmt: skip
    if ok:
        marks = np.flatnonzero(kind != _TOKEN)
        is_act = kind[marks] == _ACT
        counts = (np.diff(np.r_[marks, kind.size]) - 1)[is_act]
        acts_per = np.diff(np.r_[np.flatnonzero(~is_act), is_act.size]) - 1
        ok = bool((acts_per == N_STAGES).all() and (counts <= mb.MAX_DEPTH).all())
    if not ok:
        return _parse_each(space, genotypes, lut)
    acts = (codes[kind == _ACT] - 1000).reshape(n, N_STAGES)
    return codes[heads], acts, counts, codes[kind == _TOKEN] - 2000


def _parse_each(space: MBConvSpace, genotypes: Sequence[str], lut: dict[str, int]) -> Parsed:
    pairs: list[int] = []
    acts: list[int] = []
    counts: list[int] = []
    toks: list[int] = []
    for g in genotypes:
        try:
            sections = g.split("|")
            if len(sections) != N_STAGES + 1 or "\n" in g:
                raise KeyError
            pair = lut[sections[0]]
            a, c, t = [], [], []
            for part in sections[1:]:
                act, _, rest = part.partition(":")
                blocks = rest.split(",")
                if len(blocks) > mb.MAX_DEPTH:
                    raise KeyError
                a.append(_ACT_ID[act])
                c.append(len(blocks))
                t += [_TOK_ID[x] for x in blocks]
        except (KeyError, AttributeError):
            space.parse(g)  # raises the clear error
            raise SpaceError(f"mbconv genotype {g!r} is not canonical") from None
        pairs.append(pair)
        acts += a
        counts += c
        toks += t
    i64 = np.int64
    return (np.array(pairs, i64), np.array(acts, i64).reshape(-1, N_STAGES),
            np.array(counts, i64), np.array(toks, i64))  # fmt: skip


def mbconv_graph_arrays(space: MBConvSpace, genotypes: Sequence[str]) -> arrays.GraphArrays:
    """Exactly ``arrays.graph_arrays([space.to_graph(g) for g in genotypes])`` (no node ids)."""
    if len(genotypes) == 0:
        return arrays.graph_arrays([], keep_ids=False)
    store = _store(space)
    pair_code, acts, counts, tok_ids = _parse_all(space, genotypes)
    n = pair_code.size
    structs = store.cache[SETUP_KEY]
    all_pairs = _pairs(space)
    used, pid = np.unique(pair_code, return_inverse=True)
    info = _pair_info(space, store, [all_pairs[int(i)] for i in used])
    p_base = np.array([v["base"] for v in info], np.int64)
    p_res = np.stack([v["residual"] for v in info])  # (P, N_CTX)
    p_stem = np.stack([v["stem"] for v in info])  # (P, act, 2): structure, row base
    p_head = np.stack([v["head"] for v in info])
    tok = _TOK[tok_ids]
    # per block: genotype, stage, first in stage, context, row base, structure
    stage_of = np.repeat(np.arange(n * N_STAGES, dtype=np.int64), counts)
    first = np.zeros(stage_of.size, bool)
    first[np.r_[0, np.cumsum(counts)[:-1]]] = True
    g_of = stage_of // N_STAGES
    ctx = 2 * (stage_of % N_STAGES) + (~first)
    k, e, se = tok[:, 0], tok[:, 1], tok[:, 2]
    act = acts.ravel()[stage_of]
    blk_base = p_base[pid[g_of]] + ((ctx * N_E + e) * N_K + k) * CELL
    expands = (_EXPANSION[e] != 1).astype(np.int64)
    blk_struct = structs[expands, se, p_res[pid[g_of], ctx], act]
    # segments: stem, blocks, head per genotype
    n_blocks = counts.reshape(n, N_STAGES).sum(axis=1)
    segs = n_blocks + 2
    g0 = np.r_[0, np.cumsum(segs)[:-1]].astype(np.int64)
    seg_struct = np.empty(int(segs.sum()), np.int64)
    seg_base = np.empty_like(seg_struct)
    blk_pos = np.arange(stage_of.size, dtype=np.int64) + 2 * g_of + 1
    seg_struct[blk_pos], seg_base[blk_pos] = blk_struct, blk_base
    st = p_stem[pid, acts[:, 0]]
    hd = p_head[pid, acts[:, -1]]
    seg_struct[g0], seg_base[g0] = st[:, 0], st[:, 1]
    last = g0 + segs - 1
    seg_struct[last], seg_base[last] = hd[:, 0], hd[:, 1]
    shapes = [(1, 3, all_pairs[i][0], all_pairs[i][0]) for i in pair_code.tolist()]
    return store.assemble(seg_struct, seg_base, segs, shapes)
