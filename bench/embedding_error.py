"""Which part of a distilled student's embedding error costs agreement with the teacher
(issue 26): the coarse part, or the fine part that changes from one embedding cell to the
next?

    python bench/embedding_error.py --student out/distill_curve/runs/default_1200/model.safetensors \\
        --data out/distill_curve/held

For every held-out scene the teacher's and the student's embeddings are computed, the
error split as ``err = coarse + fine`` with ``fine = distill.losses.fine_part(err)`` (each
cell less its 3x3 mean, the part ``distill train --detail-weight`` weighs up), and the
teacher's own decoder is run with box prompts (each ground-truth mask's tight box, as
`pocketsam eval prompts --prompt box`) on the teacher's embedding plus

* the whole error (the student itself),
* the coarse part alone, the fine part alone,
* the fine part scaled down to the coarse part's mean squared error (equal size: which
  kind of error costs more per unit).

Box mIoU is against the teacher's masks from its own embedding; "small" is masks under 32²
pixels, as in `eval prompts`. One thread, a few seconds per scene.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="the student checkpoint")
    p.add_argument("--teacher", help="default: the bundled model (bench/distill_curve.py's teacher)")
    p.add_argument("--data", required=True, help="held-out scenes with SA-1B annotations")
    args = p.parse_args()

    from pocketsam import SamPredictor, build_sam
    from pocketsam.checkpoints import default_checkpoint
    from pocketsam.data.sa1b import read_sa1b_json
    from pocketsam.distill.losses import fine_part
    from pocketsam.eval.metrics import paired_iou
    from pocketsam.io import load_image
    from pocketsam.masks import batched_mask_to_box

    torch.set_num_threads(1)
    teacher = SamPredictor(build_sam(checkpoint=args.teacher or str(default_checkpoint())))
    student = SamPredictor(build_sam(checkpoint=args.student))
    arms = ("student", "coarse part only", "fine part only", "fine part at the coarse part's MSE")
    ious: dict[str, list[float]] = {a: [] for a in arms}
    small: list[bool] = []
    mse = np.zeros(3)
    scenes = sorted(Path(args.data).glob("*.json"))
    for path in scenes:
        sample = read_sa1b_json(path)
        image = load_image(sample.image_path)
        student.set_image(image)
        s = student.get_image_embedding().clone()
        teacher.set_image(image)
        t = teacher.get_image_embedding().clone()
        err = s - t
        fine = fine_part(err)
        coarse = err - fine
        mse += [float(err.pow(2).mean()), float(coarse.pow(2).mean()), float(fine.pow(2).mean())]
        scale = float(coarse.pow(2).mean() / fine.pow(2).mean()) ** 0.5
        gt = sample.masks()
        gt = gt[gt.reshape(len(gt), -1).any(1)]  # a mask with no pixel admits no box
        boxes = batched_mask_to_box(torch.from_numpy(gt)).float()  # tight, inclusive edges
        small += (gt.reshape(len(gt), -1).sum(1) < 32**2).tolist()

        def masks(embedding: torch.Tensor) -> np.ndarray:
            teacher.set_embedding(embedding, image.shape[:2])
            return teacher.predict_batch(boxes=boxes, multimask_output=False)[0][:, 0].cpu().numpy()

        reference = masks(t)
        for arm, emb in zip(arms, (s, t + coarse, t + fine, t + scale * fine)):
            ious[arm] += paired_iou(masks(emb), reference, both_empty=1.0).tolist()
    mse /= len(scenes)
    is_small = np.array(small)
    print(f"{len(scenes)} scenes, {len(is_small)} boxes ({is_small.sum()} small); embedding MSE: "
          f"whole {mse[0]:.4f}, coarse part {mse[1]:.4f}, fine part {mse[2]:.4f}")
    print("| teacher's embedding + | box mIoU vs teacher | small |")
    print("|---|---|---|")
    for arm in arms:
        v = np.array(ious[arm])
        print(f"| {arm} | {v.mean():.3f} | {v[is_small].mean():.3f} |")


if __name__ == "__main__":
    main()
