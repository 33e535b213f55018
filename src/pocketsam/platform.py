"""What this machine can run fast: CPU feature flags, native bf16 and int8 dot products, and
torch's thread count. Used by the runtime to pick and describe execution paths; imports no
other part of pocketsam."""

from __future__ import annotations

import os
import platform as _platform

import torch

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""int8 dot-product instructions (torch's oneDNN int8 kernels need one of them)."""
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Native bfloat16 arithmetic."""


def cpu_flags() -> set[str]:
    """The CPU feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def x86() -> bool:
    return _platform.machine().lower() in ("x86_64", "amd64")


def int8_dot_product(flags: set[str] | None = None) -> bool:
    """The CPU has an int8 dot-product instruction (:data:`VNNI_FLAGS`)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in VNNI_FLAGS)


def relevant_flags(flags: set[str] | None = None) -> list[str]:
    """The flags that decide which speed path wins (shown in bench headers and fast's reason)."""
    flags = cpu_flags() if flags is None else flags
    return sorted(f for f in flags if f in (*VNNI_FLAGS, *BF16_FLAGS, "avx512f", "avx2", "amx_tile"))


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matmuls run natively (CUDA, or a CPU with AVX512-BF16 / AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private: absent in some builds
    try:
        return bool(check()) if check is not None else False
    except Exception:  # pragma: no cover
        return False


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    ``threads`` wins; else ``POCKETSAM_THREADS``; else torch's current setting is kept
    (which already honours ``OMP_NUM_THREADS`` and defaults to the physical cores), capped
    at the CPUs this process may run on so that nothing is oversubscribed.
    """
    if threads is None and os.environ.get("POCKETSAM_THREADS"):
        threads = int(os.environ["POCKETSAM_THREADS"])
    if threads is None:
        threads = torch.get_num_threads()
        try:
            threads = min(threads, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            pass
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
