"""Training estimators sized for a CPU: ``train:digits`` and ``train:folder``.

Each candidate is rebuilt at its space's proxy-training size
(:meth:`~nasctl.spaces.base.SearchSpace.proxy_space`: the same genotype, hence the same block
structure, at a reduced input resolution and channel width, with a ``num_classes``-way head),
trained from a seed derived from the genotype for a fixed number of steps (Adam, cosine-decayed
learning rate, mini-batches resized on the fly to the network's input size), and scored by its
accuracy (%) on the held-out images, evaluated in mini-batches. torch runs on one thread
while it trains (the caller's thread count is restored afterwards). Same genotype, same data,
same machine: same score.

Memory: the images (uint8, bounded by :func:`~nasctl.search.accuracy.imagedata.load_folder`'s
``max_images``), one proxy network, its Adam state and one mini-batch's activations; nothing is
cached per candidate or per resolution. See ``docs/accuracy.md`` for what the proxy preserves.

For later work on precision: :meth:`TrainingEstimator.train` returns the trained module with the
graph it was built from (``to_onnx(trained.graph, params=trained.module.export_params())`` is
the trained network as ONNX), :meth:`TrainingEstimator.evaluate` scores a module and
:meth:`TrainingEstimator.evaluate_onnx` scores an ONNX model with ONNX Runtime on the same
held-out images.
"""

from __future__ import annotations

import hashlib
import math
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.arch.graph import Graph
from nasctl.arch.torch_threads import one_thread
from nasctl.errors import SearchError
from nasctl.search.accuracy.base import AccuracyEstimator, PrecisionView, register_estimator
from nasctl.search.accuracy.imagedata import ImageSet, digits, load_folder
from nasctl.spaces.base import SearchSpace

if TYPE_CHECKING:
    import numpy as np
    import torch

    from nasctl.arch.torch_module import GraphModule


@dataclass
class TrainedNet:
    """A candidate after proxy training: ``module`` (eval mode) computes ``graph``."""

    genotype: str
    graph: Graph
    module: GraphModule
    accuracy: float  #: held-out accuracy (%)
    steps: int


def genotype_seed(genotype: str, seed: int = 0) -> int:
    """A 63-bit seed from the genotype string (stable across runs and machines)."""
    h = hashlib.sha256(f"{seed}:{genotype}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


class TrainingEstimator(AccuracyEstimator):
    """Held-out accuracy (%) after ``steps`` mini-batch steps of proxy training."""

    needs_graph = False
    refine_cap = 3  # each estimate costs seconds: refine around the top candidates sparingly

    def __init__(
        self,
        name: str,
        *,
        steps: int = 60,
        batch: int = 32,
        lr: float = 3e-3,
        eval_batch: int = 128,
        val_size: int | None = 2000,
        seed: int = 0,
    ) -> None:
        if steps < 1 or batch < 1 or eval_batch < 1:
            raise SearchError(f"{name}: steps, batch and eval_batch must be >= 1")
        self.name = name
        self.unit = f"{name.partition(':')[2].split(':')[0]} held-out accuracy (%)"
        self.steps, self.batch, self.lr, self.eval_batch = steps, batch, lr, eval_batch
        self.val_size, self.seed = val_size, seed
        self._data: ImageSet | None = None
        #: precisions asked of :meth:`for_precision` (scored together: one training each) and
        #: the INT8 activation form (uint8: ONNX Runtime's cpu path; int8: TensorRT's)
        self.precisions: list[str] = []
        self.int8_activations = "uint8"
        self._scores: dict[tuple[str, str], dict[str, float]] = {}
        #: a JSON file keeping :meth:`scores` across runs (a resumed search trains nothing twice)
        self.scores_path: Path | None = None

    # -- data ------------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> ImageSet:
        """The images (called once, lazily; a bad source raises :class:`SearchError`)."""

    @property
    def data(self) -> ImageSet:
        if self._data is None:
            self._data = self.load()
        return self._data

    def _val(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        n = len(d.y_val) if self.val_size is None else min(self.val_size, len(d.y_val))
        return d.x_val[:n], d.y_val[:n]

    @staticmethod
    def _batch(x: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """uint8 images -> float (N, C, H, W) at ``shape``'s channels and size, in [-1, 1]."""
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(x).float().div_(127.5).sub_(1.0)
        c, h, w = int(shape[1]), int(shape[2]), int(shape[3])
        if t.shape[2:] != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        if t.shape[1] != c:
            t = t.mean(dim=1, keepdim=True).expand(-1, c, -1, -1)
        # channels-last: oneDNN's depthwise and small convolutions run 2-7x faster on a CPU
        # core in this layout (forward + backward) than in NCHW; same network, same math
        return t.contiguous(memory_format=torch.channels_last)

    # -- the contract ----------------------------------------------------------------------
    def check_space(self, space: SearchSpace) -> None:
        """Reads the images (a bad folder fails here, before the search starts) and checks
        that ``space`` declares a proxy-training size."""
        if space.proxy_space(self.data.num_classes) is None:
            raise self._no_proxy(space)

    def proxy_graph(self, genotype: str, space: SearchSpace) -> Graph:
        """``genotype`` at its space's proxy-training size with this data's class count
        (:meth:`~nasctl.spaces.base.SearchSpace.proxy_graph`: image spaces bound its compute)."""
        g = space.proxy_graph(genotype, self.data.num_classes)
        if g is None:
            raise self._no_proxy(space)
        if len(g.input_shape) != 4:
            raise SearchError(f"{self.name} needs an image input (N,C,H,W); got {g.input_shape}")
        return g

    def _no_proxy(self, space: SearchSpace) -> SearchError:
        return SearchError(
            f"{self.name}: space {space.name!r} declares no proxy-training size "
            "(SearchSpace.proxy_space); use proxy:synflow or a python: estimator"
        )

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        return self.train(genotype, space).accuracy

    def accuracy_se(self, accuracy: float) -> float | None:
        """The binomial standard error (points) of a held-out accuracy of ``accuracy`` % on
        this estimator's ``n`` held-out images, ``100 * sqrt(p (1 - p) / n)``, with ``p`` kept
        half an image from 0 and 1 (digits: n = 539, 1.93 points at 72 %, 0.60 at 98 %)."""
        n = len(self._val()[1])
        if n == 0:
            return None
        p = min(max(accuracy / 100.0, 0.5 / n), 1.0 - 0.5 / n)
        return 100.0 * math.sqrt(p * (1.0 - p) / n)

    def for_precision(self, precision: str, int8_drop: Any = None) -> AccuracyEstimator:
        """This estimator at ``precision``: the trained network written at that precision
        (FP32, FP16, Q/DQ INT8 calibrated on training images) and scored by ONNX Runtime on the
        held-out images (:func:`~nasctl.search.accuracy.quantized.trained_accuracies`). Every
        view of one estimator shares its trainings: an architecture is trained once and
        evaluated at each precision asked so far. ``int8_drop`` is not needed (INT8 is
        measured)."""
        if precision not in ("fp32", "fp16", "int8"):
            raise SearchError(f"precision must be fp32, fp16 or int8; got {precision!r}")
        if precision not in self.precisions:
            self.precisions.append(precision)
        return PrecisionView(
            self, precision, lambda g, graph, space: self.scores(g, space)[precision]
        )

    def scores(self, genotype: str, space: SearchSpace) -> dict[str, float]:
        """``{precision: accuracy %}`` of ``genotype`` at every precision of the views (one
        training, cached by genotype and space)."""
        from nasctl.search.accuracy.quantized import trained_accuracies

        if self.scores_path is not None and not self._scores and self.scores_path.is_file():
            import json

            rows = json.loads(self.scores_path.read_text())
            self._scores = {(r["space"], r["genotype"]): r["accuracy"] for r in rows}
        key = (space.name, genotype)
        have = self._scores.get(key, {})
        if not set(self.precisions) <= set(have):
            with one_thread():
                have = trained_accuracies(
                    self, self.train(genotype, space), self.precisions, self.int8_activations
                )
            self._scores[key] = have
            if self.scores_path is not None:
                self._save_scores(self.scores_path)
        return have

    def _save_scores(self, path: Path) -> None:
        """Write the scores (a temporary file renamed over the old one: never half-written)."""
        import json

        rows = [{"space": s, "genotype": g, "accuracy": a} for (s, g), a in self._scores.items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)

    def train(self, genotype: str, space: SearchSpace) -> TrainedNet:
        """Train ``genotype``'s proxy network (deterministic per genotype); eval-mode result."""
        import torch
        from torch import nn

        from nasctl.arch.torch_module import to_torch

        d = self.data
        graph = self.proxy_graph(genotype, space)
        shape = graph.input_shape
        seed = genotype_seed(genotype, self.seed)
        with one_thread(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # Module.to takes memory_format at run time; torch's stubs do not list it
            net = to_torch(graph).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            opt = torch.optim.Adam(net.parameters(), lr=self.lr)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / self.steps))
            )
            loss_fn = nn.CrossEntropyLoss()
            gen = torch.Generator().manual_seed(seed)
            order = torch.empty(0, dtype=torch.long)
            net.train()
            for _ in range(self.steps):
                if len(order) < self.batch:
                    order = torch.cat([order, torch.randperm(len(d.y_train), generator=gen)])
                idx, order = order[: self.batch].numpy(), order[self.batch :]
                xb = self._batch(d.x_train[idx], shape)
                yb = torch.from_numpy(d.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(_logits(net(xb)), yb)
                if not torch.isfinite(loss):
                    raise SearchError(f"{self.name}: training diverged (loss {float(loss)})")
                loss.backward()
                opt.step()
                sched.step()
            net.eval()
            acc = self._evaluate_torch(net, shape)
        return TrainedNet(genotype, graph, net, acc, self.steps)

    def evaluate(self, module: Any, input_shape: tuple[int, ...]) -> float:
        """Held-out accuracy (%) of a torch module taking ``input_shape`` images (N,C,H,W)."""
        with one_thread():
            module.eval()
            return self._evaluate_torch(module, input_shape)

    def _evaluate_torch(self, net: Any, shape: tuple[int, ...]) -> float:
        import torch

        x, y = self._val()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(y), self.eval_batch):
                pred = _logits(net(self._batch(x[i : i + self.eval_batch], shape))).argmax(1)
                correct += int((pred.numpy() == y[i : i + self.eval_batch]).sum())
        return 100.0 * correct / len(y)

    def evaluate_onnx(self, model: Any) -> float:
        """Held-out accuracy (%) of an ONNX model (``ModelProto``, bytes or a path) run by ONNX
        Runtime on one thread; its input's batch dimension may be fixed or symbolic."""
        import numpy as np
        import onnxruntime as ort

        if hasattr(model, "SerializeToString"):
            model = model.SerializeToString()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        src = str(model) if isinstance(model, Path) else model
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dims = inp.shape
        if len(dims) != 4 or not all(isinstance(v, int) for v in dims[1:]):
            raise SearchError(f"evaluate_onnx needs a fixed (N,C,H,W) image input; got {dims}")
        fixed = dims[0] if isinstance(dims[0], int) else None
        step = fixed or self.eval_batch
        x, y = self._val()
        correct = 0
        for i in range(0, len(y), step):
            xb = self._batch(x[i : i + step], (step, *dims[1:])).numpy()
            n = len(xb)
            if fixed and n < fixed:  # pad the last batch to the model's fixed batch size
                xb = np.concatenate([xb, np.zeros((fixed - n, *xb.shape[1:]), xb.dtype)])
            out = sess.run(None, {inp.name: xb})[0][:n]
            correct += int((out.argmax(1) == y[i : i + n]).sum())
        return 100.0 * correct / len(y)


def _logits(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


class DigitsEstimator(TrainingEstimator):
    """``train:digits``: scikit-learn's bundled 8x8 digits (1,258 train, 539 held out)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("train:digits", **kw)

    def load(self) -> ImageSet:
        return digits()


class FolderEstimator(TrainingEstimator):
    """``train:folder:DIR``: the user's images (ImageFolder layout or CIFAR-10 batches)."""

    def __init__(self, root: str | Path, *, size: int = 32, **kw: Any) -> None:
        super().__init__(f"train:folder:{root}", **kw)
        self.root, self.size = Path(root), size
        if not self.root.is_dir():
            raise SearchError(
                f"train:folder: data folder {self.root} not found; set data_dir=DIR holding "
                "class subfolders of images (ImageFolder layout) or CIFAR-10 python batches"
            )

    def load(self) -> ImageSet:
        return load_folder(self.root, size=self.size)


def _training_estimator(arg: str) -> TrainingEstimator:
    kind, _, rest = arg.partition(":")
    if kind == "digits" and not rest:
        return DigitsEstimator()
    if kind == "folder":
        if not rest:
            raise SearchError(
                "train:folder needs a data folder: set data_dir=DIR (class subfolders of "
                "images, ImageFolder layout, or CIFAR-10 python batches)"
            )
        return FolderEstimator(rest)
    raise SearchError(
        f"unknown training estimator train:{arg}; expected train:digits or train:folder"
    )


register_estimator("train")(_training_estimator)
