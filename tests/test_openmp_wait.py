"""``import pocketsam`` before torch makes torch's OpenMP threads sleep instead of spin
while they wait (issue 22 item 5: spinning made one "everything" job 10-30× slower on a
busy machine; bench/openmp_wait.py measures it). Asked of libgomp itself, which prints the
spin count it uses with ``OMP_DISPLAY_ENV=verbose``; a user's own setting is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _openmp_env(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    full.update(PYTHONPATH=str(REPO / "src"), OMP_DISPLAY_ENV="verbose", **env)
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_pocketsam_makes_waiting_threads_sleep() -> None:
    import torch

    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not use OpenMP")
    shown = _openmp_env("import pocketsam, torch; torch.ones(1 << 16).sum()")
    if "GOMP_SPINCOUNT" not in shown:
        pytest.skip("torch's OpenMP runtime is not libgomp (no GOMP_SPINCOUNT to read)")
    assert "GOMP_SPINCOUNT = '0'" in shown, shown

    kept = _openmp_env("import os, pocketsam; print(os.environ['OMP_WAIT_POLICY'], file=__import__('sys').stderr)",
                       OMP_WAIT_POLICY="active")
    assert kept.strip().splitlines()[-1] == "active"
