"""Map ONNX Runtime kernels (nodes of the *optimized* graph) back to the original graph's nodes.

ORT rewrites the graph before running it: it folds BatchNormalization into convolutions, fuses
Conv + activation into ``FusedConv``, converts convolutions to the NCHWc layout
(``com.microsoft.nchwc.Conv`` named ``<tensor>_nchwc``, later absorbing an activation and a
residual ``Add`` as attribute/input), builds contrib kernels (``QuickGelu`` from Sigmoid + Mul),
inserts ``ReorderInput``/``ReorderOutput`` layout kernels and renames intermediate tensors. The
profile names kernels after the optimized graph, so a kernel's time has to be mapped back. The
optimized graph's node order is an execution order; kernels are visited in that order:

1. *anchor*: the kernel's name (minus suffixes such as ``_nchwc``), one of its output tensors or
   the longest original node name prefixing it names an original node;
2. *region*: the anchor and its ancestors not yet owned by an earlier kernel (the walk stops at
   earlier kernels' nodes, graph inputs and constants): what the kernel computes from its inputs;
3. *signature*: the original op types a kernel implements: its main op (``FusedConv`` -> Conv),
   its ``activation`` attribute, a Sum input (-> Add), folded BatchNormalizations; a signature
   op missing from the region is the anchor's consumer that ORT fused in after naming the kernel
   (``/b/pw_nchwc`` with ``activation=HardSwish`` covers ``/b/pw`` and ``/b/act``): the region
   grows downstream through such consumers (and a folded BatchNormalization);
4. a region holding op types its signature cannot explain is not guessed at: the kernel is
   marked ``"fused-unknown"`` with ``extra["unexpected"]``;
5. duplicates ORT merged (same op on the same inputs, e.g. two ReLUs of one tensor in NB201
   cells) run in their twin's kernel;
6. Identity/Dropout and constant-folded nodes run no kernel (``eliminated``); layout kernels are
   charged to their consumer kernel's nodes (the producer's at the graph end), kind
   ``"reformat"``;
7. ORT inlines ``HardSwish`` (a function op) as an unnamed ``HardSigmoid`` and an unnamed
   ``Mul(x, HardSigmoid(x))``, whose tensors are renamed; both kernels are charged to the
   HardSwish node that consumes what the kernel producing ``x`` computes.
   ORT's profile names an unnamed kernel ``<op>_<index>``; :func:`map_kernels` gives unnamed
   kernels the profile's names of that op in execution order (``profile_names``), else
   ``<op>_<position in the optimized graph>``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_MAIN_OP = {"FusedConv": "Conv", "FusedGemm": "Gemm", "FusedMatMul": "MatMul", "NhwcConv": "Conv"}
_LAYOUT_OPS = {"ReorderInput", "ReorderOutput"}
_NO_KERNEL_OPS = {"Identity", "Dropout", "Constant"}
_SUFFIX = re.compile(r"(_nchwc|_token_\d+|_fused)$")
WILDCARD = "*"
#: contrib kernels ORT builds from several ONNX ops (op types they absorb, besides their anchor)
_CONTRIB_SIGNATURE = {
    "QuickGelu": ("Sigmoid", "Mul"),
    "Gelu": ("Div", "Erf", "Add", "Mul", "Mul"),
    "BiasGelu": ("Add", "Div", "Erf", "Add", "Mul", "Mul"),
}


@dataclass
class KernelInfo:
    """Original graph nodes a kernel covers, and how they were found."""

    nodes: list[str]
    kind: str  # "kernel" | "fused" | "fused-unknown" | "reformat" | "unknown"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KernelMapping:
    """Result of :func:`map_kernels`: kernel name -> info, plus original nodes that run no kernel
    (``eliminated``) and nodes that could not be placed (``unassigned``)."""

    kernels: dict[str, KernelInfo]
    eliminated: list[str]
    unassigned: list[str]


def _attr(node: Any, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            import onnx

            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return None


def signature(node: Any, original_ops: set[str] | frozenset[str] = frozenset()) -> Counter[str]:
    """Original op types an optimized-graph node implements (multiset). A kernel whose op type
    the original graph does not have and that is not known here gets a wildcard slot."""
    if node.op_type in _CONTRIB_SIGNATURE:
        return Counter(_CONTRIB_SIGNATURE[node.op_type])
    sig: Counter[str] = Counter({_MAIN_OP.get(node.op_type, node.op_type): 1})
    if (
        node.op_type not in _MAIN_OP
        and node.op_type not in original_ops
        and node.domain not in ("", "ai.onnx", "com.microsoft.nchwc")
    ):
        sig[WILDCARD] = 8
    act = _attr(node, "activation")
    if act:
        sig[str(act)] += 1
    main = _MAIN_OP.get(node.op_type, node.op_type)
    if main == "Conv" and len(node.input) >= 4 and node.input[3]:
        sig["Add"] += 1  # NCHWc "Sum" / FusedConv "Z" input: a residual add folded in
    if main in ("Conv", "Gemm"):
        sig["BatchNormalization"] += 4  # BNs right after it are folded into its weights
    return sig


@dataclass
class _N:
    """An original node with inputs rewritten through merged duplicates."""

    name: str
    op_type: str
    input: list[str]
    output: list[str]


class _Original:
    """Index of the original graph: names, producers, consumers, constants.

    ORT merges duplicate nodes (common subexpression elimination: the same op on the same inputs
    with the same attributes, e.g. two ReLUs of one tensor); such a duplicate is kept out of the
    index and listed in ``aliases`` (duplicate key -> the key of the node it merged into).
    """

    def __init__(self, model: Any) -> None:
        g = model.graph
        self.constants = {i.name for i in g.initializer}
        self.nodes: list[_N] = []
        self.aliases: dict[str, str] = {}
        tensor_alias: dict[str, str] = {}
        seen: dict[tuple[Any, ...], _N] = {}
        self.order: dict[str, int] = {}
        for pn in g.node:
            ins = [tensor_alias.get(t, t) for t in pn.input]
            n = _N(pn.name, pn.op_type, ins, list(pn.output))
            self.order[self.key(n)] = len(self.order)
            if pn.op_type == "Constant" or (ins and all(t in self.constants or not t for t in ins)):
                self.constants.update(n.output)  # constant folding: fed only by constants
            sig = (
                pn.op_type,
                tuple(ins),
                pn.domain,
                tuple(a.SerializeToString() for a in pn.attribute),
            )
            first = seen.get(sig)
            if first is not None and ins and len(first.output) == len(n.output):
                self.aliases[self.key(n)] = self.key(first)
                tensor_alias.update(zip(n.output, first.output, strict=True))
                continue
            seen[sig] = n
            self.nodes.append(n)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.producer: dict[str, _N] = {}
        self.consumers: dict[str, list[_N]] = {}
        for n in self.nodes:
            for t in n.output:
                self.producer[t] = n
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        for dup, rep in tensor_alias.items():  # names of merged tensors still resolve
            if rep in self.producer:
                self.producer.setdefault(dup, self.producer[rep])

    def key(self, n: Any) -> str:
        return n.name or (n.output[0] if n.output else "")

    def lookup(self, name: str) -> Any:
        """Original node named ``name`` or producing tensor ``name``."""
        return self.by_name.get(name) or self.producer.get(name)


def _anchor(orig: _Original, kernel: Any) -> Any:
    name = kernel.name
    while True:
        hit = orig.lookup(name)
        if hit is not None:
            return hit
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            break
        name = stripped
    for t in kernel.output:
        if t in orig.producer:
            return orig.producer[t]
    best = None
    for cand in orig.by_name:  # longest original name that prefixes the kernel name
        if (
            kernel.name.startswith(cand)
            and len(kernel.name) > len(cand)
            and kernel.name[len(cand)] in "_/:"
            and (best is None or len(cand) > len(best))
        ):
            best = cand
    return orig.by_name[best] if best else None


def _name_unnamed(kernels: list[Any], profile_names: list[str] | None) -> list[Any]:
    """Copies of unnamed kernels named as ORT's profile names them (module docstring, 7)."""
    import onnx

    named = {k.name for k in kernels if k.name}
    free: dict[str, list[str]] = {}
    for n in profile_names or []:
        op, _, idx = n.rpartition("_")
        if n not in named and idx.isdigit():
            free.setdefault(op, []).append(n)
    out = []
    for pos, k in enumerate(kernels):
        if not k.name:
            c = onnx.NodeProto()
            c.CopyFrom(k)
            left = free.get(k.op_type)
            c.name = left.pop(0) if left else f"{k.op_type}_{pos}"
            k = c
        out.append(k)
    return out


def _hardswish_pairs(kernels: list[Any]) -> dict[str, Any]:
    """HardSigmoid kernel name -> the Mul kernel that completes an inlined HardSwish."""
    out: dict[str, Any] = {}
    for h in kernels:
        if h.op_type != "HardSigmoid" or not h.input or not h.output:
            continue
        for m in kernels:
            if m.op_type == "Mul" and sorted(m.input) == sorted([h.input[0], h.output[0]]):
                out[h.name] = m
                break
    return out


def _hardswish_node(
    orig: _Original, x: str, kernels: list[Any], covered: dict[str, list[str]], owner: dict
) -> Any:
    """The unowned original HardSwish consuming ``x`` or what the kernel producing ``x``
    (through layout kernels) computes."""
    producer = {t: k for k in kernels for t in k.output}
    tensors = [x]
    k = producer.get(x)
    while k is not None and k.op_type in _LAYOUT_OPS and k.input:
        tensors.append(k.input[0])
        k = producer.get(k.input[0])
    if k is not None:
        for key in covered.get(k.name, []):
            n = orig.lookup(key)
            tensors += list(n.output) if n is not None else []
    for t in tensors:
        for c in orig.consumers.get(t, []):
            if c.op_type == "HardSwish" and orig.key(c) not in owner:
                return c
    return None


def map_kernels(
    original: Any, optimized: Any, profile_names: list[str] | None = None
) -> KernelMapping:
    """Map every node of ``optimized`` (an ``onnx.ModelProto`` dumped by ORT with
    ``optimized_model_filepath``) to node names of ``original`` (the model given to ORT);
    ``profile_names``: the kernel names of ORT's profile, in execution order (they name the
    kernels the dump leaves unnamed)."""
    orig = _Original(original)
    ops = {n.op_type for n in orig.nodes}
    kernels = [k for k in optimized.graph.node if k.op_type != "Constant"]
    kernels = _name_unnamed(kernels, profile_names)
    hswish = _hardswish_pairs(kernels)
    hswish_mul = {m.name for m in hswish.values()}
    eliminated = [
        orig.key(n)
        for n in orig.nodes
        if n.op_type in _NO_KERNEL_OPS or (n.output and all(t in orig.constants for t in n.output))
    ]
    owner: dict[str, str] = {key: "" for key in eliminated}  # "" = runs no kernel
    anchors = {k.name: _anchor(orig, k) for k in kernels if k.op_type not in _LAYOUT_OPS}
    claimed = {orig.key(a) for a in anchors.values() if a is not None}
    covered: dict[str, list[str]] = {k.name: [] for k in kernels}
    unexpected: dict[str, list[str]] = {}
    for k in kernels:
        if k.name in hswish_mul:
            continue
        if k.name in hswish:  # an inlined HardSwish: HardSigmoid + Mul (docstring, 7)
            hs = _hardswish_node(orig, k.input[0], kernels, covered, owner)
            if hs is not None:
                owner[orig.key(hs)] = k.name
                covered[k.name].append(orig.key(hs))
                covered[hswish[k.name].name].append(orig.key(hs))
            continue
        a = anchors.get(k.name)
        if a is None or orig.key(a) in owner:
            continue
        sig = signature(k, ops)
        region = _region(orig, a, owner)
        region += _extend(orig, region[-1], sig, region, owner, claimed)
        for n in region:
            owner[orig.key(n)] = k.name
            covered[k.name].append(orig.key(n))
        odd = _unexplained(region, sig)
        if odd:
            unexpected[k.name] = odd
    for dup, rep in orig.aliases.items():  # a merged duplicate runs in its twin's kernel
        k = owner.get(rep)
        if k:
            covered[k].append(dup)
        elif k == "":
            eliminated.append(dup)
    unassigned = [orig.key(n) for n in orig.nodes if orig.key(n) not in owner]
    unassigned += [d for d, r in orig.aliases.items() if r not in owner]
    return _finish(orig, kernels, covered, unexpected, eliminated, unassigned)


def _region(orig: _Original, anchor: Any, owner: dict[str, str]) -> list[Any]:
    """The anchor and its not-yet-owned ancestors, in original graph order."""
    seen = {orig.key(anchor)}
    stack, found = [anchor], [anchor]
    while stack:
        n = stack.pop()
        for t in n.input:
            p = orig.producer.get(t)
            if p is None or t in orig.constants:
                continue
            key = orig.key(p)
            if key in seen or key in owner:
                continue
            seen.add(key)
            found.append(p)
            stack.append(p)
    return sorted(found, key=lambda n: orig.order[orig.key(n)])


def _missing(sig: Counter[str], region: list[Any]) -> Counter[str]:
    have = Counter(n.op_type for n in region)
    return Counter({op: c - have[op] for op, c in sig.items() if c > have[op] and op != WILDCARD})


def _extend(
    orig: _Original,
    last: Any,
    sig: Counter[str],
    region: list[Any],
    owner: dict[str, str],
    claimed: set[str],
) -> list[Any]:
    """Consumers ORT fused in after naming the kernel: follow the single consumer of the
    region's last node while it is a missing signature op (or a folded BatchNormalization after
    a conv) whose other inputs are already computed."""
    added: list[Any] = []
    inside = {orig.key(n) for n in region}
    while True:
        cons = [c for t in last.output for c in orig.consumers.get(t, [])]
        if len(cons) != 1:
            return added
        c = cons[0]
        key = orig.key(c)
        need = _missing(sig, region + added)
        folded_bn = c.op_type == "BatchNormalization" and sig["BatchNormalization"] > 0
        if key in owner or key in claimed or not (need[c.op_type] > 0 or folded_bn):
            return added
        ready = all(
            t in orig.constants
            or t not in orig.producer
            or orig.key(orig.producer[t]) in owner
            or orig.key(orig.producer[t]) in inside
            for t in c.input
        )
        if not ready:
            return added
        added.append(c)
        inside.add(key)
        last = c


def _unexplained(region: list[Any], sig: Counter[str]) -> list[str]:
    """Region op types the signature cannot account for (none for a wildcard kernel)."""
    if sig[WILDCARD] > 0:
        return []
    left = Counter(sig)
    odd = []
    for n in region:
        if left[n.op_type] > 0:
            left[n.op_type] -= 1
        elif n.op_type not in _NO_KERNEL_OPS:
            odd.append(n.op_type)
    return odd


def _finish(
    orig: _Original,
    kernels: list[Any],
    covered: dict[str, list[str]],
    unexpected: dict[str, list[str]],
    eliminated: list[str],
    unassigned: list[str],
) -> KernelMapping:
    out: dict[str, KernelInfo] = {}
    for k in kernels:
        nodes = sorted(covered[k.name], key=lambda x: orig.order.get(x, 0))
        if k.name in unexpected:
            out[k.name] = KernelInfo(nodes, "fused-unknown", {"unexpected": unexpected[k.name]})
        elif nodes:
            out[k.name] = KernelInfo(nodes, "fused" if len(nodes) > 1 else "kernel")
        else:
            out[k.name] = KernelInfo([], "unknown")
    producer = {t: k for k in kernels for t in k.output}
    consumers: dict[str, list[Any]] = {}
    for k in kernels:
        for t in k.input:
            consumers.setdefault(t, []).append(k)
    for k in kernels:
        if k.op_type not in _LAYOUT_OPS:
            continue
        target = next(
            (c for t in k.output for c in consumers.get(t, []) if out[c.name].nodes), None
        )
        if target is None:
            target = next(
                (producer[t] for t in k.input if t in producer and out[producer[t].name].nodes),
                None,
            )
        if target is not None:
            out[k.name] = KernelInfo(
                list(out[target.name].nodes), "reformat", {"charged_to": target.name}
            )
        else:
            out[k.name] = KernelInfo([], "reformat")
    return KernelMapping(out, eliminated, unassigned)
