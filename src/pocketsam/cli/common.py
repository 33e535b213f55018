"""What the commands share, in one place (command modules never import each other):

* checks made before any model is loaded: :func:`resolve_checkpoint` (and
  :func:`say_bundled`, the bundled model's one-line note),
  :func:`check_output_dir`, :func:`check_output_file`, :func:`check_device`;
* options: ``--speed`` (:func:`add_speed_argument`, :func:`say_speed`), the "segment
  everything" thresholds (:func:`add_threshold_args`, :func:`check_thresholds`,
  :func:`threshold_settings`; which mode takes which is
  :mod:`pocketsam.everything.modes`'), the training engine's options
  (:func:`add_engine_options`, :func:`engine_config`, :func:`report`);
* :func:`warnings_as_lines`: pocketsam's warnings as one ``warning: …`` line each;
  :func:`prompt_progress`: prompts decoded / total while one image is segmented.

Free of torch at import, like every command module (``pocketsam --help`` stays instant).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pocketsam.errors import CheckpointError, InputError
from pocketsam.everything.modes import THRESHOLDS, misplaced_thresholds
from pocketsam.thresholds import EVERYTHING_KEYS

# ------------------------------------------------------------------ checks and --speed


SPEED_CHOICES = ("default", "fast", "int8", "bf16", "onnx", "compile", "reference")


def add_speed_argument(p: argparse.ArgumentParser) -> None:
    """``--speed``: the inference path (:mod:`pocketsam.runtime`), shared by the commands that
    segment."""
    p.add_argument("--speed", choices=SPEED_CHOICES, default=None,
                   help="inference path (default: the checkpoint's own: int8 for a `pocketsam quantize` folder, "
                        "else the exact float32 path); fast: the fastest path that keeps masks within IoU 0.99 "
                        "of float32 on this CPU (bf16, int8 or default), and says which")


def say_speed(predictor) -> None:
    """One line naming the inference path, when it is not the exact float32 default."""
    if predictor.mode != "default":
        print(f"speed: {predictor.speed_path}")


def resolve_checkpoint(checkpoint: str | None) -> Path:
    """The checkpoint to use: ``--checkpoint`` (a path, ``bundled``, or the name of official
    weights in the local weights folder, :func:`pocketsam.weights.resolve_checkpoint_name`),
    else the bundled model if there is one.

    Only checks that the file (or int8 artifact folder) exists; its contents are
    validated by ``build_sam``.
    """
    if checkpoint is None:
        from pocketsam.checkpoints import default_checkpoint

        return default_checkpoint()  # a clear error if this installation has none
    from pocketsam.weights import resolve_checkpoint_name

    path = resolve_checkpoint_name(checkpoint)  # a clear error for a known name not downloaded
    if not path.exists():
        raise CheckpointError(f"checkpoint '{checkpoint}' does not exist", "check the --checkpoint path")
    if path.is_dir():
        from pocketsam.runtime.artifact import is_artifact

        if not is_artifact(path):
            raise CheckpointError(f"checkpoint '{checkpoint}' is a directory",
                                  "pass the checkpoint file itself, or an int8 artifact folder of `pocketsam quantize`")
    return path


def say_bundled(checkpoint: Path) -> None:
    """One line on stderr when ``checkpoint`` is the bundled model: what it is and how to get
    a model for real photos (:data:`pocketsam.weights.BUNDLED_NOTE`)."""
    from pocketsam.weights import BUNDLED_NOTE, is_bundled

    if is_bundled(checkpoint):
        print(f"note: {BUNDLED_NOTE}", file=sys.stderr)


def check_output_dir(out: str) -> Path:
    """``out`` must be a directory, or creatable as one; it is not created here."""
    path = Path(out)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"output '{out}' exists and is not a directory", "give a directory for --out")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"output directory '{out}' is not writable", "choose another --out")
        return path
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot create output directory '{out}' (in '{ancestor}')", "choose another --out")
    return path


def check_output_file(out: str, option: str = "--output") -> Path:
    """``out`` must be writable as a file: not a directory, in an existing writable
    directory. Checked before the work, so a long run never fails only at its end.

    Raises:
        InputError: naming ``option``.
    """
    path = Path(out)
    if path.is_dir():
        raise InputError(f"{option} '{out}' is a directory", f"give a file name for {option}, e.g. {Path(out) / 'results.json'}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InputError(f"{option} '{out}': directory '{parent}' does not exist", "create it first, or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{option} '{out}' is not writable", f"choose another {option}")
    return path

def check_device(device: str) -> str:
    """Validate a torch device string and that the device exists."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device '{device}'", "use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device '{device}' requested but CUDA is not available", "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device '{device}' does not exist ({torch.cuda.device_count()} CUDA devices)",
                "use --device cuda:0",
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError(f"device '{device}' requested but MPS is not available", "use --device cpu")
    elif dev.type != "cpu":
        raise InputError(f"device type '{dev.type}' is not supported", "use cpu, cuda, cuda:N or mps")
    return device


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show pocketsam's warnings raised inside the block (something in a checkpoint
    ignored, :class:`~pocketsam.checkpoints.CheckpointWarning`; detections for no image,
    :class:`~pocketsam.proposals.sources.UnmatchedDetectionsWarning`; no masks while
    the checkpoint's thresholds went unused,
    :class:`~pocketsam.everything._common.UnusedRecommendationWarning`) as one
    ``warning: …`` line each on stderr; other warnings are shown as usual."""
    from pocketsam.errors import CheckpointWarning
    from pocketsam.everything._common import UnusedRecommendationWarning
    from pocketsam.proposals.sources import UnmatchedDetectionsWarning

    ours = (CheckpointWarning, UnmatchedDetectionsWarning, UnusedRecommendationWarning)
    with warnings.catch_warnings(record=True) as caught:
        for category in ours:
            warnings.simplefilter("always", category)
        yield
    for w in caught:
        if issubclass(w.category, ours):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


#: Seconds an image's prompt progress bar waits before it appears (a quick image shows none).
PROGRESS_DELAY_S = 2.0


@contextmanager
def prompt_progress(generator: Any, desc: str, quiet: bool = False) -> Iterator[None]:
    """A progress bar on stderr for one image's ``generator.generate`` inside the block:
    prompts decoded / total (the generators' :attr:`progress` callback). It appears once
    the image has taken :data:`PROGRESS_DELAY_S`, and goes when the image is done."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="prompt", file=sys.stderr, delay=PROGRESS_DELAY_S, leave=False,
               disable=quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total and not bar.disable and time.time() >= bar.start_t + bar.delay:
            bar.refresh()  # the last prompts came within tqdm's redraw interval: show "N/N" anyway

    generator.progress = progress
    try:
        yield
    finally:
        generator.progress = None
        bar.close()


# ------------------------------------------------------------ "everything" thresholds


def add_threshold_args(p: argparse.ArgumentParser) -> None:
    """The mask-filter options shared by ``everything`` and ``eval everything``. Left out,
    each comes from the checkpoint's recommendation (the bundled model has them), else
    from the generator's default."""
    p.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="predicted-IoU filter (default: the checkpoint's recommendation, else 0.88; boxes 0)")
    p.add_argument("--stability-score-thresh", type=float, default=None,
                   help="stability filter (default: the checkpoint's recommendation, else 0.95; boxes 0)")
    p.add_argument("--high-score-thresh", type=float, default=None,
                   help="hierarchical: logit that counts as confident (default: the checkpoint's, else 8.5)")


def check_threshold_values(args: argparse.Namespace) -> None:
    """A clear error for an invalid threshold option: the rule of
    :func:`pocketsam.checkpoints.check_everything_setting`, which checkpoints follow too
    (``everything``, ``eval everything`` and ``export``)."""
    from pocketsam.thresholds import check_everything_setting

    for key in EVERYTHING_KEYS:
        if getattr(args, key) is not None:
            check_everything_setting(key, getattr(args, key), option_name(key))


def check_thresholds(args: argparse.Namespace) -> None:
    """:func:`check_threshold_values`, and a clear error for a threshold that ``args.mode``'s
    generator does not take."""
    check_threshold_values(args)
    for key, modes in misplaced_thresholds(args.mode, {k: getattr(args, k) for k in EVERYTHING_KEYS}):
        raise InputError(f"{option_name(key)} is only used with --mode {' or '.join(modes)}")


def threshold_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The filter options ``args.mode`` takes, as generator keyword arguments (``None``:
    not given)."""
    return {k: getattr(args, k) for k in THRESHOLDS[args.mode]}


def option_name(key: str) -> str:
    """The command-line option of a setting: ``pred_iou_thresh`` → ``--pred-iou-thresh``."""
    return f"--{key.replace('_', '-')}"


# ------------------------------------------------------------ training-engine options


def engine_defaults() -> dict[str, Any]:
    """:class:`~pocketsam.train.config.TrainConfig`'s defaults, the engine options' defaults."""
    from pocketsam.train.config import TrainConfig

    return TrainConfig.defaults()


def add_engine_options(p: argparse.ArgumentParser, rounds_help: str) -> None:
    """The training engine's options: optimisation, prompting rounds and the run folder."""
    d = engine_defaults()
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=d["steps"])
    o.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"images per process per micro-step (default {d['batch_size']})")
    o.add_argument("--masks-per-image", type=int, default=d["masks_per_image"], help=f"instances (prompts) per image (default {d['masks_per_image']})")
    o.add_argument("--accum", type=int, default=d["accum_steps"], help="gradient accumulation micro-steps")
    o.add_argument("--lr", type=float, default=d["lr"])
    o.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    o.add_argument("--warmup", type=int, default=d["warmup_steps"], help="linear warm-up steps, then cosine decay")
    o.add_argument("--grad-clip", type=float, default=d["grad_clip"])
    o.add_argument("--adam-beta2", type=float, default=d["adam_beta2"],
                   help=f"AdamW's second-moment decay (default {d['adam_beta2']}); lower adapts sooner to the shrinking "
                        "gradients of a short run")
    o.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=d["precision"],
                   help="bf16 autocast helps on GPUs; on CPUs fp32 trains faster (measured: bf16 backward is slower)")
    o.add_argument("--rounds", type=int, default=d["rounds"], help=rounds_help)
    o.add_argument("--box-prob", type=float, default=d["box_prob"], help="share of masks whose first prompt is a box")
    o.add_argument("--seed", type=int, default=d["seed"])

    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics.jsonl and the exported model")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint_last.pt")
    r.add_argument("--overwrite", action="store_true", help="start again in an OUT that already holds a run")
    r.add_argument("--allow-config-change", action="store_true", help="with --resume: continue even if settings differ from the saved run's")
    r.add_argument("--save-every", type=int, default=d["save_every"])
    r.add_argument("--log-every", type=int, default=d["log_every"])
    r.add_argument("--eval-every", type=int, default=d["eval_every"], help="held-out validation every N steps (0: at the end)")
    r.add_argument("--val-images", type=int, default=d["val_images"], help="images held out from the end of the data")
    r.add_argument("--workers", type=int, default=d["num_workers"], help="data-loading processes")
    r.add_argument("--tensorboard", action="store_true")
    r.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the local GPU if any)")
    r.add_argument("--threads", type=int, help="CPU threads for torch")


def engine_config(args: argparse.Namespace, **fixed: Any):
    """A validated :class:`TrainConfig` from :func:`add_engine_options`' arguments plus
    the command's own fields (``data``, ``arch``, ``init``...)."""
    import torch

    from pocketsam.train import TrainConfig

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        out=args.out, steps=args.steps, batch_size=args.batch_size, masks_per_image=args.masks_per_image,
        accum_steps=args.accum, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
        grad_clip=args.grad_clip, adam_beta2=args.adam_beta2, precision=args.precision, rounds=args.rounds,
        box_prob=args.box_prob,
        save_every=args.save_every, log_every=args.log_every, eval_every=args.eval_every,
        val_images=args.val_images, num_workers=args.workers, seed=args.seed, tensorboard=args.tensorboard,
        device=args.device, resume=args.resume, overwrite=args.overwrite,
        allow_config_change=args.allow_config_change, **fixed,
    )
    cfg.validate()
    return cfg


def report(result: dict[str, Any], out: str) -> None:
    """The end of a training run, printed by rank 0: its final numbers and the model file."""
    if int(os.environ.get("RANK", "0")) == 0:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(f"done: {shown}")
        print(f"model: {Path(out) / 'model.safetensors'} (load with pocketsam.build_sam(checkpoint=...))")
