"""Static int8 ONNX models: calibration with a clipping-range search, then ONNX Runtime's
QDQ quantiser.

Pipeline (:func:`quantize_onnx`):

1. the float32 graph (exported by :mod:`pocketsam.runtime.onnx` with opset 20, so
   GELU is one ``Gelu`` node) is simplified offline by ONNX Runtime's *basic* optimiser
   (constant folding, ``MatMul + Add → Gemm``); the result has standard ONNX ops only;
2. calibration (:func:`calibrate`): the graph runs on the calibration inputs with every
   activation that will be quantised exposed as an output (in groups bounded in memory).
   Ranges are the min/max over all inputs; a sample of every tensor is kept (a 64×64
   crop for a convolution's input, 1024 rows for a ``Gemm``'s, 64k values otherwise);
3. range search (:mod:`pocketsam.runtime.qnumerics`): each tensor read by quantised layers
   gets the clipping range that minimises the squared error of *those layers' outputs*
   (int8 weights and uint8 input vs float32); a tensor only written by a quantised layer
   gets the range that minimises its own error;
4. ``onnxruntime.quantization.quantize_static`` writes the QDQ model from those ranges
   (per-channel symmetric int8 weights, per-tensor uint8 activations). At load time ONNX
   Runtime fuses the QDQ pairs into ``QLinearConv`` / ``QGemm`` kernels (VNNI/AMX int8
   where the CPU has them).

What is quantised is a measured choice (see :mod:`pocketsam.quant` and README "Speed
modes"): ``Gemm`` (linear layers) by default, convolutions too with ``int8_layers="all"``.
Attention's activation-by-activation ``MatMul``s and the softmax stay float32 (quantising
them made the encoder slower and no more accurate here), and ``Gemm`` outputs stay float32
(``QGemm`` writes float directly, which saves a dequantisation pass before LayerNorm / GELU
/ residual adds).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from pocketsam.errors import InputError
from pocketsam.runtime.qnumerics import ALPHAS, clip_errors, fake_quant_weight, search_clip_range

#: opset of the exported float graphs (20: GELU is one ``Gelu`` node, which quantisation
#: leaves alone and ONNX Runtime runs as one kernel).
QUANT_OPSET = 20
#: what ``int8_layers`` quantises: "linear" (``Gemm``) or "all" (``Conv`` and ``Gemm``).
OP_TYPES = {"linear": ("Gemm",), "all": ("Conv", "Gemm")}
#: memory bound for the activations exposed by one calibration run.
GROUP_BYTES = 768 * 2**20
CONV_CROP = 64
GEMM_ROWS = 1024
SELF_VALUES = 65536


def _ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise InputError("int8 quantisation needs onnx and onnxruntime", "pip install 'pocketsam[onnx]'") from exc
    return onnxruntime


def simplify(src: Path, dst: Path) -> Path:
    """ONNX Runtime's basic graph optimisations, saved (standard ONNX ops only)."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    return dst


# ----------------------------------------------------------------------------- plan
@dataclass
class Layer:
    """A quantised node: what the range search needs to recompute its output."""

    name: str
    op: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    attrs: dict

    def run(self, x: torch.Tensor, quantized: bool) -> torch.Tensor:
        if self.op == "Conv":
            w = self._qw if quantized else self.weight
            return F.conv2d(x, w, self.bias, self.attrs["strides"], 0, self.attrs["dilations"], self.attrs["group"])
        w = self._qw if quantized else self.weight  # (out, in)
        return F.linear(x, w, self.bias)

    def __post_init__(self) -> None:
        self._qw = fake_quant_weight(self.weight, 0)


@dataclass
class Plan:
    """The tensors calibration observes and, per tensor, the quantised layers reading it."""

    tensors: dict[str, tuple[int, ...]]  # name -> static shape
    readers: dict[str, list[Layer]] = field(default_factory=dict)
    #: tensors that get quantised: inputs of quantised layers and outputs of convolutions
    #: (``Gemm`` outputs stay float32: ``QGemm`` writes float)
    quantized: set[str] = field(default_factory=set)
    layers: list[Layer] = field(default_factory=list)
    first: list[str] = field(default_factory=list)  # the first quantised node (graph order)
    last: list[str] = field(default_factory=list)  # the last one


def _attr(node, name, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def make_plan(model, op_types: Sequence[str] = OP_TYPES["all"]) -> Plan:
    """Which tensors to calibrate (inputs and outputs of the ``op_types`` nodes, as ONNX
    Runtime's calibrator selects them) and the layers that read each one. ``first`` /
    ``last`` are the first and last of those layers in graph order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    infos = {vi.name: vi for vi in (*g.value_info, *g.input, *g.output)}

    def shape(name):
        vi = infos.get(name)
        if vi is None or not vi.type.HasField("tensor_type"):
            return None
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        return tuple(dims) if all(d for d in dims) else None

    plan = Plan(tensors={})
    for node in g.node:
        if node.op_type not in op_types:
            continue
        for t in (*node.input, *node.output):
            if t and t not in inits:
                s = shape(t)
                if s is None:
                    raise InputError(f"cannot calibrate '{t}': its shape is not static", "export with a fixed input size")
                plan.tensors[t] = s
        plan.quantized.add(node.input[0])
        if node.op_type == "Conv":
            plan.quantized.update(node.output)
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).astype(np.float32).copy())
        b = None
        if len(node.input) > 2 and node.input[2] in inits:
            b = torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).copy())
        if node.op_type == "Conv":
            pads = list(_attr(node, "pads", [0] * 4))
            attrs = {"strides": list(_attr(node, "strides", [1, 1])), "dilations": list(_attr(node, "dilations", [1, 1])),
                     "group": int(_attr(node, "group", 1)), "pads": pads}
            if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue  # not produced by torch.onnx; leave its range at min/max
        else:
            if _attr(node, "transA", 0) or float(_attr(node, "alpha", 1.0)) != 1.0 or float(_attr(node, "beta", 1.0)) != 1.0:
                continue
            if not _attr(node, "transB", 0):
                w = w.T.contiguous()
            if b is not None and b.dim() != 1:
                b = b.reshape(-1)
            attrs = {}
        layer = Layer(node.name, node.op_type, w, b, attrs)
        plan.layers.append(layer)
        plan.readers.setdefault(node.input[0], []).append(layer)
    if plan.layers:
        plan.first, plan.last = [plan.layers[0].name], [plan.layers[-1].name]
    return plan


# ---------------------------------------------------------------------- calibration
@dataclass
class TensorStats:
    lo: float = float("inf")
    hi: float = float("-inf")
    samples: list[torch.Tensor] = field(default_factory=list)


def _sample(name: str, x: np.ndarray, plan: Plan, rng: np.random.Generator) -> torch.Tensor:
    readers = plan.readers.get(name)
    t = torch.from_numpy(x)
    if readers and readers[0].op == "Conv" and t.dim() == 4:
        pads = readers[0].attrs["pads"]
        # zero padding applied here so that the crop and the layer see the border the same way
        t = F.pad(t, (pads[1], pads[3], pads[0], pads[2]))
        h, w = t.shape[-2:]
        ch, cw = min(h, CONV_CROP), min(w, CONV_CROP)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return t[..., y0 : y0 + ch, x0 : x0 + cw].clone()
    if readers and readers[0].op == "Gemm":
        t = t.reshape(-1, t.shape[-1])
        if t.shape[0] > GEMM_ROWS:
            t = t[torch.from_numpy(np.sort(rng.choice(t.shape[0], GEMM_ROWS, replace=False)))]
        return t.clone()
    flat = t.reshape(-1)
    if flat.numel() > SELF_VALUES:
        flat = flat[torch.from_numpy(rng.choice(flat.numel(), SELF_VALUES, replace=False))]
    return flat.clone()


def _groups(plan: Plan, budget: int) -> list[list[str]]:
    groups, current, size = [], [], 0
    for name, shape in plan.tensors.items():
        nbytes = 4 * int(np.prod(shape))
        if current and size + nbytes > budget:
            groups.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        groups.append(current)
    return groups


def _session(model_bytes: bytes, threads: int | None):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def calibrate(model_path: Path, feeds: Sequence[dict[str, np.ndarray]], plan: Plan | None = None, search: bool = True,
              alphas: Sequence[float] = ALPHAS, threads: int | None = None,
              budget: int = GROUP_BYTES, log=None) -> tuple[dict[str, tuple[float, float]], dict]:
    """Ranges for every tensor of :func:`make_plan` over ``feeds``.

    Returns:
        ``({tensor: (rmin, rmax)}, report)``; ``report`` has, per searched tensor, the
        chosen alpha and the relative output error of min/max and of the chosen range.
    """
    import onnx

    plan = plan or make_plan(onnx.load(str(model_path)))
    stats = {name: TensorStats() for name in plan.tensors}
    rng = np.random.default_rng(0)
    for gi, group in enumerate(_groups(plan, budget)):
        aug = onnx.load(str(model_path))
        existing = {o.name for o in aug.graph.output}
        for name in group:
            if name not in existing:
                aug.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        sess = _session(aug.SerializeToString(), threads)
        for fi, feed in enumerate(feeds):
            outs = sess.run(group, feed)
            for name, x in zip(group, outs):
                s = stats[name]
                s.lo, s.hi = min(s.lo, float(x.min())), max(s.hi, float(x.max()))
                if search and name in plan.quantized:
                    s.samples.append(_sample(name, x, plan, rng))
            del outs
            if log:
                log(f"calibration: group {gi + 1}, input {fi + 1}/{len(feeds)}")
        del sess
    ranges = {name: (s.lo, s.hi) for name, s in stats.items()}
    report: dict = {}
    if not search:
        return ranges, report
    with torch.inference_mode():
        for name, s in stats.items():
            readers = plan.readers.get(name, [])
            if not s.samples or s.hi <= s.lo:
                continue
            errs = np.zeros(len(alphas))
            ref_energy = 0.0
            if readers:
                xs = torch.cat(s.samples) if readers[0].op == "Conv" else torch.cat(s.samples, 0)
                for layer in readers:
                    errs += clip_errors(xs, s.lo, s.hi, lambda t, l=layer: l.run(t, True),
                                        lambda t, l=layer: l.run(t, False), alphas)
                    ref_energy += float((layer.run(xs, False).double() ** 2).sum())
            else:
                xs = torch.cat(s.samples)
                errs += clip_errors(xs, s.lo, s.hi, alphas=alphas)
                ref_energy += float((xs.double() ** 2).sum())
            lo, hi, alpha = search_clip_range(errs, s.lo, s.hi, alphas)
            ranges[name] = (lo, hi)
            denom = max(ref_energy, 1e-30)
            report[name] = {"alpha": alpha, "objective": "layer output" if readers else "tensor",
                            "rel_err_minmax": float(errs[0] / denom), "rel_err_searched": float(errs.min() / denom)}
            s.samples.clear()
    return ranges, report


def quantize_onnx(fp32_path: Path, out_path: Path, ranges: dict[str, tuple[float, float]],
                  exclude_nodes: Iterable[str] = (), op_types: Sequence[str] = OP_TYPES["all"]) -> Path:
    """ONNX Runtime's static QDQ quantiser with the given activation ranges."""
    _ort()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    data = TensorsData(CalibrationMethod.MinMax,
                       {k: (np.array(lo, np.float32), np.array(hi, np.float32)) for k, (lo, hi) in ranges.items()})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pocketsam-quant-", dir=out_path.parent) as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        target = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import logging

            level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)  # "Axis 1 is out-of-range…" notices
            try:
                quantize_static(
                    str(fp32_path), str(target), None, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(op_types), nodes_to_exclude=list(exclude_nodes),
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                    extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"], "WeightSymmetric": True},
                )
            finally:
                logging.getLogger().setLevel(level)
        os.chmod(target, 0o644)
        os.replace(target, out_path)
    return out_path
