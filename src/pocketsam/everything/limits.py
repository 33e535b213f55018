"""Documented upper bounds on the work one call may ask for, checked up front (before any
array is allocated or any model runs) and the same in the library, the CLI and the server.

Without them a typo is a hang or a crash: ``points_per_side=100000`` asks numpy for a
74.5 GiB grid, ``crop_n_layers=50`` for 4⁵⁰ crops, and 100,000 points in one
``SamPredictor.predict`` call ran for minutes. The bounds sit far above any useful
setting (segment_anything's defaults: 32 points a side, 0-1 crop layers, a handful of
points per prompt) and far below what exhausts a machine:

* :data:`MAX_POINTS_PER_SIDE` = 1024 (1,048,576 prompts for one crop);
* :data:`MAX_CROP_N_LAYERS` = 4 (1 + 4 + 16 + 64 + 256 = 341 crops, each one encoder pass);
* :data:`MAX_GRID_PROMPTS` = 2²⁰ point prompts for one image over all its crops;
* :data:`~pocketsam.prompts.MAX_PROMPT_POINTS` = 1024 points in one prompt (one mask
  prediction), and :data:`~pocketsam.prompts.MAX_PROMPT_BATCH` = 4096 prompts (boxes, or point sets) decoded in one batched
  call: also the bound on ``points_per_batch`` / ``boxes_per_batch`` (each prompt holds
  3 low-resolution masks, 0.75 MiB, while its batch is decoded).

:func:`everything_work` gives the estimate the checks use, so a caller can show it.
"""

from __future__ import annotations

from pocketsam.errors import InputError
from pocketsam.prompts import MAX_PROMPT_BATCH

MAX_POINTS_PER_SIDE = 1024
MAX_CROP_N_LAYERS = 4
MAX_GRID_PROMPTS = 1 << 20


def _name(key: str, cli: bool) -> str:
    return f"--{key.replace('_', '-')}" if cli else key


def everything_work(points_per_side: int, crop_n_layers: int = 0, downscale: int = 1) -> dict[str, int]:
    """The work one image asks of a grid generator: ``crops`` (encoder passes) and
    ``prompts`` (point prompts over all crops; the hierarchical mode decodes at most this
    many). Pure arithmetic, no allocation."""
    crops = prompts = 0
    for layer in range(int(crop_n_layers) + 1):
        n_crops = 4**layer
        side = int(points_per_side / (downscale**layer))
        crops += n_crops
        prompts += n_crops * side * side
    return {"crops": crops, "prompts": prompts}


def check_everything_work(points_per_side: int | None, crop_n_layers: int = 0, downscale: int = 1,
                          cli: bool = False) -> dict[str, int]:
    """Refuse a grid setting over the bounds, naming the numbers; returns
    :func:`everything_work` when it is fine.

    Args:
        points_per_side: None when explicit point grids are given (only crops are bounded).
        cli: name the settings as command-line options (``--points-per-side``).
    Raises:
        InputError: a bound is exceeded.
    """
    pps, layers = _name("points_per_side", cli), _name("crop_n_layers", cli)
    if int(crop_n_layers) > MAX_CROP_N_LAYERS:
        crops = (4 ** (int(crop_n_layers) + 1) - 1) // 3
        raise InputError(f"{layers} {crop_n_layers} means {crops:,} crops, each a full encoder pass; "
                         f"at most {MAX_CROP_N_LAYERS} layers ({everything_work(1, MAX_CROP_N_LAYERS)['crops']} crops) "
                         "are allowed", f"use {layers} 0-2 (segment_anything uses 0 or 1)")
    if points_per_side is None:
        return everything_work(0, crop_n_layers, downscale)
    if int(points_per_side) > MAX_POINTS_PER_SIDE:
        raise InputError(f"{pps} {points_per_side} means {int(points_per_side) ** 2:,} prompts per crop; "
                         f"at most {MAX_POINTS_PER_SIDE} a side are allowed", f"use {pps} 16-64 (default 32)")
    work = everything_work(points_per_side, crop_n_layers, max(1, int(downscale)))
    if work["prompts"] > MAX_GRID_PROMPTS:
        raise InputError(f"{pps} {points_per_side} with {layers} {crop_n_layers} means {work['prompts']:,} prompts "
                         f"over {work['crops']} crops per image; at most {MAX_GRID_PROMPTS:,} are allowed",
                         f"lower {pps} or {layers}")
    return work


def check_batch_size(value: int, name: str = "points_per_batch", cli: bool = False) -> int:
    """``value`` if it is a batch size from 1 to :data:`MAX_PROMPT_BATCH`.

    Raises:
        InputError: naming the setting (``--points-per-batch`` with ``cli``).
    """
    if not 1 <= int(value) <= MAX_PROMPT_BATCH:
        raise InputError(f"{_name(name, cli)} must be from 1 to {MAX_PROMPT_BATCH}, got {value}",
                         "64 (the default) decodes fast; larger batches only need more memory")
    return int(value)
