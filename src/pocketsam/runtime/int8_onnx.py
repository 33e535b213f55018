"""Running an int8 ONNX encoder with ONNX Runtime on every x86 CPU, VNNI or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketsam.io import atomic_write
from pocketsam.platform import int8_dot_product, x86
from pocketsam.runtime.artifact import ENCODER_NAME
from pocketsam.runtime.onnx import default_cache_dir

# ------------------------------------------------------------------ running on CPUs without VNNI


def saturates_int16() -> bool:
    """True on x86 CPUs without an int8 dot-product instruction (AVX2, or AVX-512 without
    VNNI/AMX). There ONNX Runtime's uint8×int8 kernels use ``vpmaddubsw``, which adds two
    uint8·int8 products in a saturating int16: with full-range weights (|w| ≤ 127) and
    inputs up to 255 a pair sum reaches 64,770 and is clipped at 32,767. Measured on an
    AVX2-only AMD EPYC: the golden vit_t's int8 embedding error vs float32 is 0.21 through
    the fused kernels, against 0.073 for the same QDQ model evaluated unfused."""
    return x86() and not int8_dot_product()


def unsigned_weights(model) -> int:
    """Rewrite, in place, the symmetric int8 weights of every layer (``Gemm``, ``Conv``,
    ``MatMul`` reading a ``DequantizeLinear`` of an initializer) as uint8 with zero point
    128: the same numbers exactly (``w + 128``), which ONNX Runtime then runs with its
    uint8×uint8 kernels, which widen to int16 before multiplying and cannot saturate.
    Measured on the AVX2 EPYC (golden vit_t at 1024², 1 thread, one run): embedding error
    0.070 (the unfused QDQ value), encoder 4.67 s vs 4.82 s for the saturating uint8×int8
    kernels and 4.69 s for float32 ONNX Runtime. (Halving the weights to 7 bits instead,
    ONNX Runtime's ``reduce_range``, was 3.76 s but error 0.117.) Returns how many layers
    were rewritten."""
    from onnx import TensorProto, numpy_helper  # optional dependency (the [onnx] extra)

    inits = {t.name: t for t in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    done = 0
    for node in model.graph.node:
        if node.op_type not in ("Gemm", "Conv", "MatMul") or len(node.input) < 2 or node.input[1] not in dq:
            continue
        deq = dq[node.input[1]]
        weight = inits.get(deq.input[0])
        if weight is None or weight.data_type != TensorProto.INT8:
            continue
        q = numpy_helper.to_array(weight)
        zero = inits.get(deq.input[2]) if len(deq.input) > 2 else None
        if zero is not None and numpy_helper.to_array(zero).any():
            continue  # asymmetric int8 weights (not written by pocketsam): leave them
        weight.CopyFrom(numpy_helper.from_array((q.astype(np.int16) + 128).astype(np.uint8), weight.name))
        shape = numpy_helper.to_array(inits[deq.input[1]]).shape  # one zero point per scale
        zp = numpy_helper.from_array(np.full(shape, 128, np.uint8), f"{weight.name}_u8_zero_point")
        model.graph.initializer.append(zp)
        del deq.input[2:]
        deq.input.append(zp.name)
        done += 1
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]  # the replaced int8 zero points go
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return done


def runnable_encoder(artifact, cache_dir: str | Path | None = None) -> Path:
    """The int8 encoder file of ``artifact`` (a loaded, checksum-verified
    :class:`~pocketsam.runtime.artifact.Int8Artifact`) to run on this CPU: its own, or where
    :func:`saturates_int16` a copy with :func:`unsigned_weights` applied, made once and
    cached under the encoder's recorded SHA-256."""
    if not saturates_int16():
        return artifact.encoder_path
    import onnx  # optional dependency (the [onnx] extra)

    sha = artifact.meta["files"][ENCODER_NAME]["sha256"]
    out = Path(cache_dir or default_cache_dir()) / "int8-no-vnni" / f"{sha[:24]}.onnx"
    if not out.exists():
        model = onnx.load(str(artifact.encoder_path))
        unsigned_weights(model)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out) as f:
            f.write(model.SerializeToString())
    return out
