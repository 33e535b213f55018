"""The two distillation steps, as ``nn.Module`` steps of the training engine
(:class:`pocketsam.train.Trainer` runs them like :class:`~pocketsam.train.step.SamTrainStep`).

Batch (see :func:`pocketsam.distill.data.distill_collate`): ``image`` (B, 3, S, S) 0–255,
``size`` (B, 2), ``masks`` (B, K, S, S) / ``valid`` (B, K) ground truth where the data has
it (K may be 0), and ``teacher_embedding`` (B, C, G, G) from the teacher cache. The
teacher's image encoder never runs here.

* :class:`EncoderDistillStep` — MobileSAM's *decoupled* distillation: the student encoder
  regresses the teacher's embedding; its prompt encoder and mask decoder are the
  teacher's, frozen.
* :class:`FullDistillStep` — TinySAM's *full-stage* distillation: the student is trained
  against the teacher with embedding + decoder-token + mask-logit losses over several
  prompting rounds (its decoder too only where the engine leaves it trainable:
  :attr:`~pocketsam.distill.run.DistillConfig.train_decoder`). The teacher's (small)
  prompt encoder and mask decoder run online on the cached embedding to give the token
  and logit targets for each prompt.
  Switches for the ablation: ``hard_prompts`` (later points drawn where student and
  teacher masks disagree, labelled by the teacher; otherwise drawn uniformly from the
  image, labelled the same way) and ``hard_mask_weighting``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pocketsam.distill.losses import (
    embedding_loss,
    embedding_loss_and_mse,
    hard_mask_weights,
    logit_loss,
    mask_disagreement,
    resize_to,
    token_loss_and_mse,
)
from pocketsam.masks import batched_mask_to_box
from pocketsam.models.sam import Sam
from pocketsam.train.prompts import cell_centre, correction_points, noisy_boxes, sample_from_regions
from pocketsam.train.step import encode_images
from pocketsam.train.validate import quick_miou


@dataclass(frozen=True)
class LossWeights:
    """Weights of the full-stage loss ``embed·L_emb + token·L_tok + logit·L_logit``."""

    embed: float = 1.0
    token: float = 1.0
    logit: float = 1.0


class _TeacherHead(nn.Module):
    """The teacher's prompt encoder and mask decoder, frozen (its encoder is the cache)."""

    def __init__(self, teacher: Sam) -> None:
        super().__init__()
        self.prompt_encoder = teacher.prompt_encoder
        self.mask_decoder = teacher.mask_decoder
        self.img_size = teacher.img_size
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always in eval mode
        return super().train(False)


class _DistillBase(nn.Module):
    """``detail``: the extra weight of the embedding error's fine part; ``distance``: ``l2``
    or ``l1``, how the embedding (and decoder-token) errors are measured
    (:func:`~pocketsam.distill.losses.embedding_loss`)."""

    def __init__(self, student: Sam, teacher: Sam, detail: float = 0.0, distance: str = "l2") -> None:
        super().__init__()
        self.sam = student
        self.teacher = _TeacherHead(teacher)
        self.scale = teacher.img_size / student.img_size  # student input frame → teacher's
        self.detail = detail
        self.distance = distance

    def encode(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return encode_images(self.sam, image, size)

    def embedding_term(self, emb: torch.Tensor, t_emb: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The embedding loss to train on, and the plain embedding MSE to log."""
        loss, mse = embedding_loss_and_mse(emb, t_emb, self.detail, self.distance)
        return loss.mean(), float(mse.detach().mean())

    @torch.no_grad()
    def evaluate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Held-out embedding MSE; with ground truth also the student's 1-click / box mIoU
        and its box-prompt mIoU against the teacher's masks."""

        emb = self.encode(batch["image"], batch["size"])
        out = {"val_embed_mse": float(embedding_loss(emb, batch["teacher_embedding"]).mean())}
        img_idx, mask_idx = batch["valid"].nonzero(as_tuple=True)
        if len(img_idx) == 0:
            return out
        out.update(quick_miou(self.sam, self, batch))
        boxes = batched_mask_to_box(batch["masks"][img_idx, mask_idx]).float()
        s_logits, s_iou, _ = decode(self.sam, emb[img_idx], None, boxes)
        t_logits, t_iou, _ = decode(self.teacher, batch["teacher_embedding"][img_idx], None, boxes * self.scale)
        s, t = single_output(self.sam, s_logits, s_iou), single_output(self.teacher, t_logits, t_iou)
        out["val_miou_vs_teacher_box"] = float(1 - mask_disagreement(resize_to(s[:, None], t.shape[-2:])[:, 0], t).mean())
        return out


def decode(model, emb: torch.Tensor, points, boxes, mask_input=None):
    """Every mask output of ``model`` (a Sam or the teacher head) for prompts in its input
    frame: logits (N, M+1, 4g, 4g), IoU (N, M+1), output tokens (N, 1+M+1, C)."""
    sparse, dense = model.prompt_encoder(points, boxes, mask_input)
    return model.mask_decoder.predict_masks_and_tokens(emb, model.prompt_encoder.get_dense_pe(), sparse, dense)


def single_output(model, logits: torch.Tensor, iou: torch.Tensor | None = None) -> torch.Tensor:
    """The mask a single-mask request returns: output 0, or for a multimask-only decoder
    (TinySAM) the best multimask output by predicted IoU. (N, M+1, h, w) → (N, h, w)."""
    if getattr(model.mask_decoder, "multimask_only", False) and iou is not None:
        return best_multimask(logits, iou)
    return logits[:, 0]


def best_multimask(logits: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    best = iou[:, 1:].argmax(1) + 1
    return logits[torch.arange(len(logits), device=logits.device), best]


class EncoderDistillStep(_DistillBase):
    """Decoupled distillation (MobileSAM): loss = MSE(student embedding, teacher embedding),
    plus ``detail`` times the MSE of the error's fine part (mean absolute errors with
    ``distance="l1"``).

    The student's prompt encoder and mask decoder are replaced by copies of the teacher's
    and frozen (:func:`pocketsam.distill.run.prepare_student` does that)."""

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        emb = self.encode(batch["image"], batch["size"])
        loss, mse = self.embedding_term(emb, batch["teacher_embedding"])
        return loss, {"embed_mse": mse}


class FullDistillStep(_DistillBase):
    """Full-stage distillation (TinySAM), see the module docstring.

    Args:
        prompts_per_image: random first points for images without ground truth.
        rounds: prompting rounds per prompt (the first prompt, then one added point each).
        box_prob: share of ground-truth masks whose first prompt is a noisy box.
        hard_prompts: later points from the student/teacher disagreement region.
        hard_mask_weighting: weight each prompt's losses by :func:`hard_mask_weights`.
        gamma: the weighting's strength γ.
        detail, distance: see :class:`_DistillBase`.
    """

    def __init__(
        self,
        student: Sam,
        teacher: Sam,
        weights: LossWeights = LossWeights(),
        prompts_per_image: int = 8,
        rounds: int = 3,
        box_prob: float = 0.5,
        hard_prompts: bool = True,
        hard_mask_weighting: bool = True,
        gamma: float = 1.0,
        detail: float = 0.0,
        distance: str = "l2",
    ) -> None:
        super().__init__(student, teacher, detail, distance)
        self.weights = weights
        self.prompts_per_image = prompts_per_image
        self.rounds = rounds
        self.box_prob = box_prob
        self.hard_prompts = hard_prompts
        self.hard_mask_weighting = hard_mask_weighting
        self.gamma = gamma
        # A multimask-only teacher (TinySAM) never trained output 0: it is no target.
        self.first_output = 1 if teacher.mask_decoder.multimask_only else 0

    def first_prompts(self, batch, generator):
        """Groups of first prompts in the student's frame: ``(img_idx, coords, labels,
        boxes, multimask)``. Ground-truth masks give a point or a noisy box; images without
        any give ``prompts_per_image`` uniformly random points (the teacher's masks for
        them are the targets)."""
        groups = []
        valid = batch["valid"]
        img_idx, mask_idx = valid.nonzero(as_tuple=True)
        dev = batch["image"].device
        pts_img, pts_xy = [], []
        if len(img_idx):
            gt = batch["masks"][img_idx, mask_idx]
            use_box = torch.rand(len(gt), generator=generator, device=dev) < self.box_prob
            if use_box.any():
                groups.append((img_idx[use_box], None, None, noisy_boxes(gt[use_box], generator), False))
            if (~use_box).any():
                xy, _ = sample_from_regions(gt[~use_box], generator)
                pts_img.append(img_idx[~use_box])
                pts_xy.append(xy)
        unlabeled = (~valid.any(1)).nonzero().squeeze(1) if valid.numel() else torch.arange(len(valid), device=dev)
        if len(unlabeled):
            k = self.prompts_per_image
            idx = unlabeled.repeat_interleave(k)
            hw = batch["size"][idx].float()  # (n, 2) valid h, w
            u = torch.rand(len(idx), 2, generator=generator, device=dev)
            pts_img.append(idx)
            pts_xy.append(torch.stack([u[:, 1] * hw[:, 1], u[:, 0] * hw[:, 0]], 1).floor())
        if pts_img:
            xy = torch.cat(pts_xy)
            labels = torch.ones(len(xy), 1, dtype=torch.long, device=dev)
            groups.append((torch.cat(pts_img), xy[:, None], labels, None, True))
        return groups

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        w = self.weights
        emb = self.encode(batch["image"], batch["size"])
        t_emb = batch["teacher_embedding"]
        emb_term, emb_mse = self.embedding_term(emb, t_emb)
        total = w.embed * emb_term
        logs = {"embed_mse": emb_mse, "token_mse": 0.0, "logit_bce": 0.0, "iou_vs_teacher": 0.0}
        count = 0
        groups = self.first_prompts(batch, generator)
        n_all = sum(len(g[0]) for g in groups)
        low_t = t_emb.shape[-1] * 4  # the teacher's low-res mask grid
        for img_idx, coords, labels, boxes, multimask in groups:
            s_emb, g_temb = emb[img_idx], t_emb[img_idx]
            frame = batch["size"][img_idx].float() * self.scale * low_t / self.teacher.img_size
            region = _valid_region(frame, low_t)  # the image content on the teacher's low-res grid
            for r in range(self.rounds):
                pts = (coords, labels) if coords is not None else None
                t_pts = (coords * self.scale, labels) if coords is not None else None
                s_logits, _, s_tok = decode(self.sam, s_emb, pts, boxes)
                with torch.no_grad():
                    t_logits, t_iou, t_tok = decode(self.teacher, g_temb, t_pts, None if boxes is None else boxes * self.scale)
                outs = slice(self.first_output, None)
                s_low = resize_to(s_logits, t_logits.shape[-2:])
                # the mask this prompt asks for: best multimask output for a lone click
                if multimask and r == 0 or self.first_output:
                    best = t_iou[:, 1:].argmax(1) + 1
                else:
                    best = torch.zeros(len(img_idx), dtype=torch.long, device=t_iou.device)
                rows = torch.arange(len(img_idx), device=best.device)
                s_sel, t_sel = s_low[rows, best], t_logits[rows, best]
                weight = (hard_mask_weights(s_sel, t_sel, self.gamma) if self.hard_mask_weighting
                          else torch.ones(len(img_idx), device=s_sel.device))
                tok, tok_mse = token_loss_and_mse(s_tok, t_tok, self.distance)
                lg = logit_loss(s_logits[:, outs], t_logits[:, outs])
                total = total + (weight * (w.token * tok + w.logit * lg)).sum() / (n_all * self.rounds)
                logs["token_mse"] += float(tok_mse.detach().sum())
                logs["logit_bce"] += float(lg.detach().sum())
                logs["iou_vs_teacher"] += float((1 - mask_disagreement(s_sel.detach(), t_sel)).sum())
                count += len(img_idx)
                if r + 1 == self.rounds:
                    break
                xy_t, lab = self._next_points(s_sel.detach() > 0, t_sel > 0, region, generator, self.teacher.img_size / low_t)
                xy = xy_t / self.scale
                coords = xy if coords is None else torch.cat([coords, xy], 1)
                labels = lab if labels is None else torch.cat([labels, lab], 1)
        for key in ("token_mse", "logit_bce", "iou_vs_teacher"):
            logs[key] /= max(count, 1)
        logs["prompts"] = n_all
        return total, logs

    def _next_points(self, student_mask, teacher_mask, region, generator, scale):
        """One more point per prompt, in the teacher's input frame, labelled by the teacher:
        from where the masks disagree (hard prompt sampling) or anywhere in the image."""
        if self.hard_prompts:
            return correction_points(student_mask, teacher_mask, generator, scale)
        xy, _ = sample_from_regions(region, generator)
        labels = teacher_mask[torch.arange(len(xy), device=xy.device), xy[:, 1].long(), xy[:, 0].long()].long()
        return cell_centre(xy, scale)[:, None], labels[:, None]


def _valid_region(frame: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, 2) content extent (h, w) in grid cells → (N, grid, grid) bool (at least 1 cell)."""
    ar = torch.arange(grid, device=frame.device)
    h = frame[:, 0].ceil().clamp(min=1)
    w = frame[:, 1].ceil().clamp(min=1)
    return (ar[None, :, None] < h[:, None, None]) & (ar[None, None, :] < w[:, None, None])
