"""to_torch computes the same function as to_onnx (same weights, ONNX Runtime vs torch)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from arch_helpers import misc_graph, mixed_graph

from nasctl.arch.graph import Graph, GraphBuilder, Node
from nasctl.arch.onnx_io import to_onnx
from nasctl.arch.torch_module import GraphModule, to_torch
from nasctl.errors import GraphError


def _ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _compare(g: Graph, seed: int = 0) -> None:
    m = to_torch(g).eval()
    # perturb BN stats so they matter, then carry torch's weights into ONNX
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    model = to_onnx(g, params=m.export_params())
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(seed)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in g.inputs.items()}
    ref = _ort_run(model, feeds)
    with torch.no_grad():
        out = m(*[torch.from_numpy(v) for v in feeds.values()])
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(ref) == len(g.outputs)
    for t, r in zip(outs, ref, strict=False):
        assert tuple(t.shape) == r.shape
        np.testing.assert_allclose(t.numpy(), r, atol=1e-4, rtol=1e-4)


def test_mixed_graph_torch_matches_onnxruntime() -> None:
    _compare(mixed_graph())


def test_misc_ops_torch_matches_onnxruntime() -> None:
    _compare(misc_graph())


def test_random_onnx_weights_load_into_torch() -> None:
    g = mixed_graph()
    model = to_onnx(g, seed=3)
    params = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    m = to_torch(g).eval()
    exported = m.export_params()
    assert set(exported) <= set(params)
    m.load_params(params)
    x = np.random.default_rng(1).standard_normal(g.input_shape).astype(np.float32)
    ref = _ort_run(model, {"input": x})[0]
    with torch.no_grad():
        out = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_module_is_trainable_and_names_are_sanitized() -> None:
    g = mixed_graph()
    m = to_torch(g)
    assert m.node_modules["/b2/dw"] == "b2_dw"
    assert "layers.b2_dw.conv.weight" in dict(m.named_parameters())
    x = torch.randn(2, 3, 32, 32)
    before = m(x).detach()
    loss = m(x).pow(2).mean()
    loss.backward()
    with torch.no_grad():  # plain SGD step (torch.optim's first import costs seconds)
        for p in m.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert m.layers["b2_dw"].conv.weight.grad is not None
    assert not torch.allclose(before, m(x).detach())


def test_other_op_is_rejected() -> None:
    b = GraphBuilder("x", (1, 3, 8, 8))
    x = b.act(b.input, "relu", id="r")
    g = b.build([x])
    g.nodes.append(Node("weird", "other", [x], ["weird"], {"onnx_op": "NonMaxSuppression"}))
    g.outputs = ["weird"]
    with pytest.raises(GraphError, match="NonMaxSuppression"):
        to_onnx(g)
    with pytest.raises(GraphError, match="other"):
        to_torch(g)


def test_graphmodule_rejects_wrong_input_count() -> None:
    m = GraphModule(mixed_graph())
    with pytest.raises(GraphError, match="expected 1 input"):
        m(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))


def test_imported_attr_variants_match() -> None:
    """hardsigmoid with non-torch alpha/beta and a global pool without kept dims (ReduceMean
    keepdims=0), as from_onnx reads them, still agree between torch and ONNX Runtime."""
    b = GraphBuilder("v", (1, 8, 6, 6))
    x = b.act(b.input, "hardsigmoid", id="hs")
    p = b.global_pool(x, id="gp")
    g = b.build([p])
    g.node("hs").attrs.update(alpha=0.2, beta=0.4)
    g.node("gp").attrs["keepdims"] = False
    g.node("gp").out_shapes = [(1, 8)]
    for opset in (17, 18):
        model = to_onnx(g, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        x = np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32)
        ref = _ort_run(model, {"input": x})[0]
        with torch.no_grad():
            out = to_torch(g)(torch.from_numpy(x)).numpy()
        assert out.shape == ref.shape == (1, 8)
        np.testing.assert_allclose(out, ref, atol=1e-5)


def test_reshape_keeps_the_batch_of_a_mini_batch() -> None:
    """A graph built at batch 1 with a batch-first reshape (fbnet's channel shuffle) trains on
    mini-batches: each sample's output is the one it has alone (the proxy training of issue 19
    crashed on every fbnet ``_g2`` genotype)."""
    import torch

    from nasctl.arch.torch_module import to_torch
    from nasctl.spaces import get_space

    space = get_space("fbnet").proxy_space(10)
    graph = space.to_graph("-".join(["k3_e1_g2"] * 22))
    assert any(n.op == "reshape" for n in graph.nodes)
    net = to_torch(graph).eval()
    x = torch.randn(4, *graph.input_shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(4)])
    assert together.shape == (4, 10)
    assert torch.allclose(together, alone, atol=1e-5)
