"""TensorRT layer names -> the ONNX graph nodes they cover.

TensorRT names an engine layer after the ONNX nodes it fused, in a few shapes (seen in trtexec's
``--exportProfile``/``--exportLayerInfo`` and the engine inspector):

- ``A + B + C``: nodes fused into one kernel (``Conv_5 + Add_6 + Relu_7``); QDQ engines also list
  the weight tensor and its quantizer: ``conv1.weight + QuantizeLinear_7 + Conv_9``;
- ``PWN(A, B)``, nested ``PWN(PWN(A, B), C)``: point-wise fusion;
- ``A -> B``: every node from A to B (needs the graph's node order to expand, else the endpoints
  with kind ``"range"``);
- ``{ForeignNode[a...b]}``: an opaque Myelin region from a to b (kind ``"foreign"``);
- ``Reformatting CopyNode for Input Tensor 0 to X`` / ``... Output Tensor 0 to X``: a layout copy,
  charged to layer X's nodes (kind ``"reformat"``);
- ``reshape_after_X``, ``transpose_before_X``, ``copied_squeeze_after_X``,
  ``unsqueeze_node_after_X``: layers TensorRT inserted around X (kind ``"generated"``);
- ``(Unnamed Layer* 306) [Shuffle]``: a layer without an ONNX origin (unknown);
- ``[ONNX Layer: /s2/b1/dw]``: TensorRT 10 metadata naming the ONNX node.

:func:`parse_layer_name` splits a name into graph nodes, tensors (weights, TF ``...:0`` names) and
unknown parts. Given the graph's node names it keeps only real nodes; given the node order it
expands ranges.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

_REFORMAT = re.compile(r"^Reformatting CopyNode for (Input|Output) Tensor (\d+) to (.+)$")
_FOREIGN = re.compile(r"^\{ForeignNode\[(.*)\]\}$")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")  # also used on layer metadata
_UNNAMED = re.compile(r"\(Unnamed Layer\* \d+\) \[[^\]]*\]")
_GENERATED = re.compile(
    r"^(reshape_after_|reshape_before_|transpose_after_|transpose_before_|copied_squeeze_after_|"
    r"squeeze_after_|unsqueeze_node_after_|unsqueeze_after_|shuffle_between_[^_]+_and_)(.+)$"
)
_TENSOR_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var", "_output")


@dataclass
class ParsedName:
    """What one TensorRT layer name says.

    Attributes:
        nodes: graph node names covered, in the order named (ranges expanded when possible).
        kind: ``"kernel"`` (one node), ``"fused"``, ``"range"`` (endpoints only), ``"foreign"``,
            ``"reformat"``, ``"generated"`` or ``"unknown"`` (no node found).
        tensors: parts that are tensors (weights, ``...:0``) rather than nodes.
        unknown: parts without an ONNX origin (``(Unnamed Layer* N) [...]``).
        target: for reformat/generated layers, the layer name they are charged to.
    """

    nodes: list[str]
    kind: str
    tensors: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    target: str | None = None


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses/brackets/braces."""
    parts: list[str] = []
    cur: list[str] = []
    depth, i = 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        if depth == 0 and text.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _looks_like_tensor(tok: str) -> bool:
    return (
        tok.endswith(_TENSOR_SUFFIXES)
        or re.search(r":\d+$", tok) is not None
        or tok.startswith("Reformatted ")
    )


class _Acc:
    def __init__(self, known: Collection[str] | None, order: Sequence[str] | None) -> None:
        self.known = set(known) if known is not None else None
        self.order = list(order) if order is not None else None
        self.nodes: list[str] = []
        self.tensors: list[str] = []
        self.unknown: list[str] = []
        self.ranges = 0
        self.unexpanded = 0
        self.foreign = False

    def node(self, tok: str) -> None:
        if self.known is not None and tok not in self.known:
            (self.tensors if _looks_like_tensor(tok) else self.unknown).append(tok)
        elif self.known is None and _looks_like_tensor(tok):
            self.tensors.append(tok)
        elif tok not in self.nodes:
            self.nodes.append(tok)

    def span(self, a: str, b: str) -> None:
        self.ranges += 1
        if self.order is not None and a in self.order and b in self.order:
            i, j = sorted((self.order.index(a), self.order.index(b)))
            for n in self.order[i : j + 1]:
                self.node(n)
        else:
            self.unexpanded += 1
            self.node(a)
            self.node(b)

    def expr(self, text: str) -> None:
        text = text.strip()
        for onnx_name in _ONNX_LAYER.findall(text):
            self.node(onnx_name.strip())
        if _ONNX_LAYER.search(text):
            return
        m = _FOREIGN.match(text)
        if m:
            self.foreign = True
            ends = m.group(1).split("...")
            if len(ends) == 2:
                self.span(ends[0].strip(), ends[1].strip())
            else:
                for part in split_top(m.group(1), ","):
                    self.expr(part)
            return
        parts = split_top(text, " + ")
        if len(parts) > 1:
            for p in parts:
                self.expr(p)
            return
        if text.startswith("PWN(") and text.endswith(")"):
            for p in split_top(text[4:-1], ","):
                self.expr(p)
            return
        if " -> " in text:
            ends = split_top(text, " -> ")
            if len(ends) == 2:
                self.span(ends[0], ends[1])
                return
        if _UNNAMED.fullmatch(text) or text.startswith("(Unnamed Layer*"):
            self.unknown.append(text)
            return
        self.node(text)


def parse_layer_name(
    name: str, known: Collection[str] | None = None, order: Sequence[str] | None = None
) -> ParsedName:
    """Parse one TensorRT layer name (see the module docstring).

    Args:
        name: the layer name as TensorRT reports it.
        known: the graph's node names; when given, only these count as nodes.
        order: the graph's node names in topological order, to expand ``A -> B`` ranges and
            ``{ForeignNode[a...b]}`` regions.
    """
    m = _REFORMAT.match(name)
    if m:
        inner = parse_layer_name(m.group(3), known, order)
        return ParsedName(inner.nodes, "reformat", inner.tensors, inner.unknown, m.group(3))
    g = _GENERATED.match(name)
    if g and not (known is not None and name in known):
        inner = parse_layer_name(g.group(2), known, order)
        return ParsedName(
            inner.nodes,
            "generated" if inner.nodes else "unknown",
            inner.tensors,
            inner.unknown,
            g.group(2),
        )
    acc = _Acc(known, order)
    acc.expr(name)
    if acc.foreign:
        kind = "foreign"
    elif not acc.nodes:
        kind = "unknown"
    elif acc.unexpanded:
        kind = "range"
    else:
        kind = "fused" if len(acc.nodes) > 1 or acc.ranges else "kernel"
    return ParsedName(acc.nodes, kind, acc.tensors, acc.unknown)


def map_engine_layers(
    names: Sequence[str], known: Collection[str] | None = None, order: Sequence[str] | None = None
) -> dict[str, ParsedName]:
    """Parse every layer name of one engine and resolve what a single name cannot: a reformat or
    generated layer whose target is an unnamed part of another fused layer (``copied_squeeze_
    after_(Unnamed Layer* 307) [ElementWise]``) is charged to that layer's nodes."""
    parsed = {n: parse_layer_name(n, known, order) for n in names}
    part_owner: dict[str, str] = {}
    for n, p in parsed.items():
        if p.nodes and p.kind not in ("reformat", "generated"):
            for part in split_top(n, " + "):
                part_owner.setdefault(part.strip(), n)
    for n, p in parsed.items():
        if p.nodes:
            continue
        for tok in ([p.target] if p.target else []) + p.unknown:
            owner = part_owner.get(tok.strip())
            if owner is not None:
                q = parsed[owner]
                kind = p.kind if p.kind in ("reformat", "generated") else "generated"
                parsed[n] = ParsedName(list(q.nodes), kind, p.tensors, p.unknown, owner)
                break
    return parsed
