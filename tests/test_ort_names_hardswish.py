"""ORT inlines HardSwish as unnamed HardSigmoid + Mul kernels: their time maps to the HardSwish
node (issue 16: the per-layer times lost it before)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import ort_optimized

from nasctl.spaces.kernels import KernelsSpace


@pytest.mark.parametrize(
    "genotype",
    [
        "act-i64-h28-hardswish",
        "conv-i64-o64-k3-s1-h28-hardswish",
        "gconv-i60-o60-g2-k3-s1-h28-hardswish",
    ],
)
def test_inlined_hardswish_kernels_map_to_the_hardswish_node(genotype: str, tmp_path: Path) -> None:
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.profiler.ort_names import map_kernels

    model = to_onnx(KernelsSpace().to_graph(genotype))
    opt = ort_optimized(model, tmp_path)
    hs = next(n.name for n in model.graph.node if n.op_type == "HardSwish")
    unnamed = [n for n in opt.graph.node if not n.name and n.op_type in ("HardSigmoid", "Mul")]
    assert len(unnamed) == 2  # what ORT does with HardSwish here
    # the profile names unnamed kernels <op>_<index>; given those names they are used
    names = [f"{n.op_type}_{40 + i}" for i, n in enumerate(unnamed)]
    mapping = map_kernels(model, opt, names)
    for name in names:
        assert mapping.kernels[name].nodes == [hs]
    assert hs not in mapping.unassigned
