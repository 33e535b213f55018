"""GEMM rate of torch and OpenVINO under an instruction-set cap (docs/speed-peers.md, "Other
CPU kinds"): does capping this CPU stand in for another kind of CPU?

    python bench/isa_caps.py
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python bench/isa_caps.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/isa_caps.py

1 thread; a 2048³ matmul in float32 and bfloat16, best of 5 by process CPU time (one run where
it takes over 2 s); GFLOP/s.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

N = 2048


def best(fn, n: int = 5) -> float:
    t = time.process_time()
    fn()
    out = time.process_time() - t
    if out > 2:  # emulated (bf16 without native support): one run says enough
        return out
    for _ in range(n):
        t = time.process_time()
        fn()
        out = min(out, time.process_time() - t)
    return out


def rate(seconds: float) -> str:
    gflops = 2 * N ** 3 / seconds / 1e9
    return f"{gflops:.0f}" if gflops >= 10 else f"{gflops:.2f}"


def main() -> None:
    torch.set_num_threads(1)
    caps = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    print(f"caps {caps or 'none'}; torch sees {torch.backends.cpu.get_cpu_capability()}")
    a, b = torch.randn(N, N), torch.randn(N, N)
    print(f"torch fp32 {rate(best(lambda: a @ b))} GFLOP/s")
    a16, b16 = a.bfloat16(), b.bfloat16()
    print(f"torch bf16 {rate(best(lambda: a16 @ b16))} GFLOP/s")
    try:
        import openvino as ov
        from openvino import opset13 as ops
    except ImportError:
        print("openvino not installed")
        return
    core = ov.Core()
    print(f"OpenVINO capabilities {core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}")
    p = ops.parameter([N, N], np.float32)
    model = ov.Model([ops.matmul(p, ops.constant(np.random.randn(N, N).astype(np.float32)), False, False)], [p])
    x = np.random.randn(N, N).astype(np.float32)
    for precision in ("f32", "bf16"):
        try:
            compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision})
        except RuntimeError as exc:
            why = [line for line in str(exc).splitlines() if line.strip()]
            print(f"OpenVINO {precision}: does not compile ({why[-1][:120] if why else type(exc).__name__})")
            continue
        request = compiled.create_infer_request()
        print(f"OpenVINO {precision} {rate(best(lambda: request.infer({0: x})))} GFLOP/s")


if __name__ == "__main__":
    main()
