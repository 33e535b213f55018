"""Shared fixtures.

Golden data comes from two places:

- ``tests/fixtures/golden`` (in the repository, always there): small reduced-width models of
  each official family with the reference implementations' outputs (see
  tests/fixtures/README.md). Everything a fresh clone needs.
- ``../shared/golden`` beside the checkout (CI has it; ``POCKETSAM_SHARED=DIR`` points
  elsewhere, e.g. ``POCKETSAM_SHARED=/nonexistent`` to see what a fresh clone runs): the
  full-size vit_t and a small SAM ViT at 1024², and ``../shared/photos`` (real photos).
  Tests that need it skip, naming what it would add.
"""

from __future__ import annotations

import pocketsam  # noqa: F401 — before torch: pocketsam sets OpenMP's wait policy, which torch reads once (pocketsam/__init__.py)
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POCKETSAM_SHARED") or REPO.parent / "shared")
GOLDEN = SHARED / "golden"
PHOTOS = SHARED / "photos"
FIXTURES = REPO / "tests" / "fixtures" / "golden"
FIXTURE_VIT_T = FIXTURES / "vit_t_tiny.pt"  # a small vit_t-layout checkpoint, always present
SCENE = REPO / "examples" / "scene.jpg"  # a synthetic scene in the repository

# OpenVINO's runtime stays out of the test process: with it loaded, a later test that spawned
# a subprocess crashed the whole run with a segmentation fault (gdb: a freed Python object
# read in the main thread right after a vfork; cause not found, OpenVINO's TBB threads
# were the new thing in the process). test_openvino runs its tests in a child process, and
# fast's OpenVINO candidates are off here (never even imported).
os.environ.setdefault("POCKETSAM_FAST_OPENVINO", "0")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def shared_golden(what: str = "the full-size vit_t/vit_small reference cases") -> Path:
    """``../shared/golden``, or skip the calling test saying what that data would add."""
    if not (GOLDEN / "cases.npz").exists():
        pytest.skip(f"{GOLDEN} not found: {what} (CI puts ../shared beside the checkout; "
                    "POCKETSAM_SHARED=DIR points elsewhere)")
    return GOLDEN


def shared_photo(name: str, what: str = "a real photo") -> Path:
    """A photo of ``../shared/photos``, or skip the calling test saying what it would add."""
    path = PHOTOS / name
    if not path.exists():
        pytest.skip(f"{path} not found: {what} (CI puts ../shared beside the checkout; "
                    "POCKETSAM_SHARED=DIR points elsewhere)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return shared_golden()


@pytest.fixture(scope="session")
def golden_cases(golden_dir):
    return np.load(golden_dir / "cases.npz")


@pytest.fixture(scope="session")
def vit_t_checkpoint(golden_dir) -> Path:
    return golden_dir / "vit_t_random.pt"


@pytest.fixture(scope="session")
def vit_small_checkpoint(golden_dir) -> Path:
    return golden_dir / "vit_small_random.pt"


@pytest.fixture(scope="session")
def fixture_cases():
    """The in-repo reference cases (models ``vit``, ``vit_t``, ``tinysam``)."""
    return np.load(FIXTURES / "cases.npz")


@pytest.fixture(scope="session")
def official_shapes() -> dict:
    """``{model_type: {key: shape}}`` of the official vit_t/vit_b/vit_l/vit_h layouts, made
    by the reference builders (tests/fixtures/make_golden.py)."""
    import json

    return json.loads((FIXTURES / "official_state_dict_shapes.json").read_text())


@dataclass(frozen=True)
class GoldenVitT:
    """One vit_t-layout checkpoint with its reference cases (keys ``vit_t/0/…``)."""

    source: str  # "in-repo" (tests/fixtures/golden) or "shared" (../shared/golden)
    checkpoint: Path
    cases: object  # np.lib.npyio.NpzFile
    stride: int  # compare low-res logits as low_res[..., ::stride, ::stride]

    @property
    def image(self) -> np.ndarray:
        return self.cases["vit_t/0/image"]

    @property
    def embedding(self) -> np.ndarray:
        return self.cases["vit_t/0/embedding"]

    def case(self, name: str) -> tuple[dict, dict]:
        """(kwargs for SamPredictor.predict, reference outputs) of case ``name``."""
        return read_case(self.cases, f"vit_t/0/{name}/")


@pytest.fixture(scope="session", params=["in-repo", "shared"])
def golden_vit_t(request, fixture_cases) -> GoldenVitT:
    """The reduced in-repo vit_t (always) and the full-size ../shared one (where present)."""
    if request.param == "in-repo":
        return GoldenVitT("in-repo", FIXTURE_VIT_T, fixture_cases, int(fixture_cases["vit_t/0/low_res_stride"]))
    root = shared_golden("the full-size vit_t (TinyViT-5M) reference cases")
    return GoldenVitT("shared", root / "vit_t_random.pt", np.load(root / "cases.npz"), 1)


def tiny_config(img_size: int = 256):
    """A very small TinyViT SAM for fast tests (seeded random weights)."""
    from pocketsam.models import DecoderConfig, SamConfig, TinyViTConfig

    return SamConfig(
        TinyViTConfig(img_size=img_size, embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1),
                      num_heads=(1, 2, 2, 2), window_sizes=(7, 7, 7, 7), num_classes=0, out_chans=32),
        DecoderConfig(transformer_depth=1, transformer_mlp_dim=64),
        prompt_embed_dim=32,
    )


@pytest.fixture()
def tiny_sam():
    from pocketsam.models import create_model

    torch.manual_seed(0)
    return create_model(tiny_config()).eval()


@pytest.fixture(scope="session")
def golden_int8_artifact(tmp_path_factory, golden_vit_t) -> Path:
    """``golden_vit_t``'s weights quantised by `pocketsam.quant` (default settings) with
    examples/scene.jpg (a synthetic scene in the repository) as calibration; made once per
    test session and source (~30 s for the full-size vit_t, a few s for the in-repo one)."""
    pytest.importorskip("onnxruntime")
    from pocketsam import build_sam
    from pocketsam.io import load_image
    from pocketsam.quant import quantize_model

    out = tmp_path_factory.mktemp("int8") / f"vit_t_int8_{golden_vit_t.source}"
    quantize_model(build_sam(checkpoint=golden_vit_t.checkpoint), [load_image(SCENE)], out, measure=0)
    return out


def read_case(cases, prefix: str) -> tuple[dict, dict]:
    """(keyword arguments for ``SamPredictor.predict``, reference outputs) of the golden case
    whose keys start with ``prefix`` (``{model}/{i}/{case}/``), float16 inputs as float32."""
    kwargs = {k[len(prefix) + 3:]: cases[k] for k in cases.files if k.startswith(prefix + "in/")}
    kwargs = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in kwargs.items()}
    if "multimask_output" in kwargs:
        kwargs["multimask_output"] = bool(kwargs["multimask_output"])
    out = {k[len(prefix) + 4:]: cases[k] for k in cases.files if k.startswith(prefix + "out/")}
    return kwargs, out


@pytest.fixture()
def one_thread():
    """Tiny models: one torch thread is fastest, and it does not stall when other work keeps
    the cores busy (two threads on a busy 2-core machine made each case ~10x slower). Use
    per test, or per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
