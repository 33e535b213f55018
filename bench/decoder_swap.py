"""Whose part loses agreement with the teacher, the encoder's or the decoder's? (docs/training.md,
"The decoder in stage full")

    python bench/decoder_swap.py --start out/distill_curve/runs/lr6e3_1200/model.safetensors \\
        --trained out/distill_curve/runs/full_after_300/model.safetensors --data out/distill_curve/held

Box mIoU against the teacher's masks (`pocketsam eval prompts --prompt box --against`) of
four models made from two students, ``start`` (before a stage-full run) and ``trained``
(after it, prompt encoder and decoder trained too): each student as it is, the trained
student's encoder under the teacher's prompt encoder and decoder, and the start student's
encoder under the trained student's. One thread; about a minute per model on 50 scenes.
"""

from __future__ import annotations

import argparse
import copy
import json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", required=True, help="the student before the stage-full run")
    p.add_argument("--trained", required=True, help="the student after it")
    p.add_argument("--teacher", help="default: the bundled model (bench/distill_curve.py's teacher)")
    p.add_argument("--data", required=True, help="held-out scenes with SA-1B annotations")
    args = p.parse_args()

    import torch

    from pocketsam import build_sam
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_prompts

    torch.set_num_threads(1)
    teacher = build_sam(checkpoint=args.teacher)
    start, trained = build_sam(checkpoint=args.start), build_sam(checkpoint=args.trained)

    def hybrid(encoder_from, head_from):
        model = copy.deepcopy(encoder_from)
        for part in ("prompt_encoder", "mask_decoder"):
            getattr(model, part).load_state_dict(getattr(head_from, part).state_dict())
        return model

    models = {
        "start": start,
        "trained": trained,
        "trained encoder + teacher's decoder": hybrid(trained, teacher),
        "start encoder + trained decoder": hybrid(start, trained),
    }
    samples = SA1BReader(args.data)
    rows = {}
    for name, model in models.items():
        r = eval_prompts(model.eval(), samples, prompt="box", teacher=teacher, progress=False)
        rows[name] = {k: round(r[k], 4) for k in ("miou_vs_teacher", "miou_vs_teacher_small", "miou")}
        print(f"{name:38s} vs teacher {r['miou_vs_teacher']:.3f} (small {r['miou_vs_teacher_small']:.3f}), "
              f"vs ground truth {r['miou']:.3f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
