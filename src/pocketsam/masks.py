"""Mask utilities shared by every part of pocketsam (predictor CLI, generators, eval).

COCO run-length encoding goes through pycocotools; everything else is vectorised torch or
numpy. One implementation of each operation lives here — callers never re-implement them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one binary mask.

    Args:
        mask: H×W bool/uint8 array.
    Returns:
        ``{"size": [H, W], "counts": str}`` — JSON-serialisable (counts decoded to ASCII).
    """
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`; also accepts uncompressed RLE (``counts`` a list)."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """Tight box ``[x, y, w, h]`` (COCO convention, inclusive pixels) of a binary mask;
    ``[0, 0, 0, 0]`` for an empty one."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


# ---------------------------------------------------------------------------------------
# Automatic mask generation ("segment everything") utilities.
#
# These follow segment_anything's ``utils/amg.py`` and ``torchvision.ops`` semantics
# exactly (same numbers, same orderings) so that pocketsam's generators return the same
# masks as the reference ones, but are written to be vectorised and to avoid work on
# masks that are going to be thrown away. Every generator in ``pocketsam.everything``
# uses these and only these.
# ---------------------------------------------------------------------------------------

import math  # noqa: E402
from itertools import product  # noqa: E402
from typing import Iterator, Sequence  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

Box = Sequence[int]  # [x0, y0, x1, y1]


class MaskData:
    """Column store for mask candidates: every column has one row per candidate.

    Columns are torch tensors, numpy arrays or lists; :meth:`filter` and :meth:`cat` keep
    them aligned. ``len(data)`` is the number of rows (0 when empty).
    """

    def __init__(self, **columns: Any) -> None:
        for k, v in columns.items():
            self._check(k, v)
        self._cols: dict[str, Any] = dict(columns)

    @staticmethod
    def _check(key: str, value: Any) -> None:
        if not isinstance(value, (list, np.ndarray, torch.Tensor)):
            raise TypeError(f"MaskData column {key!r} must be a list, array or tensor, got {type(value)}")

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key, value)
        self._cols[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._cols[key]

    def __delitem__(self, key: str) -> None:
        del self._cols[key]

    def __contains__(self, key: str) -> bool:
        return key in self._cols

    def __len__(self) -> int:
        for v in self._cols.values():
            return len(v)
        return 0

    def keys(self) -> list[str]:
        return list(self._cols)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._cols.items())

    def filter(self, keep: torch.Tensor | np.ndarray | Sequence[int]) -> None:
        """Keep rows selected by ``keep``: a bool mask (N) or integer indices (in that order)."""
        keep_t = torch.as_tensor(keep)
        if keep_t.dtype == torch.bool:
            idx = torch.nonzero(keep_t, as_tuple=False).flatten()
        else:
            idx = keep_t.to(torch.int64).flatten()
        idx_np = idx.numpy()
        for k, v in self._cols.items():
            if isinstance(v, torch.Tensor):
                self._cols[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                self._cols[k] = v[idx_np]
            else:
                self._cols[k] = [v[i] for i in idx_np]

    def cat(self, other: "MaskData") -> None:
        """Append ``other``'s rows (columns missing here are taken over)."""
        for k, v in other.items():
            if k not in self._cols:
                self._cols[k] = v if not isinstance(v, list) else list(v)
            elif isinstance(v, torch.Tensor):
                self._cols[k] = torch.cat([self._cols[k], v.to(self._cols[k].dtype)], dim=0)
            elif isinstance(v, np.ndarray):
                self._cols[k] = np.concatenate([self._cols[k], v], axis=0)
            else:
                self._cols[k] = self._cols[k] + list(v)

    def to_numpy(self) -> None:
        for k, v in self._cols.items():
            if isinstance(v, torch.Tensor):
                self._cols[k] = v.detach().cpu().numpy()


def batch_iterator(batch_size: int, *arrays: Any) -> Iterator[list[Any]]:
    """Yield aligned slices of at most ``batch_size`` rows of each of ``arrays``."""
    if not arrays or any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError("batch_iterator needs one or more inputs of the same length")
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        yield [a[start : start + batch_size] for a in arrays]


# --- point grids and crops -------------------------------------------------------------


def farthest_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the mask pixel farthest from the mask boundary (first one in raster
    order on ties): the 1-click protocol's click. The mask is padded with background
    first, so pixels on the image border are next to the boundary."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n²×2`` points ``(x, y)`` in [0, 1], cell centres of an n×n grid, row-major
    (x varies fastest). float64."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1.0 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)  # xs[i, j] = side[j], ys[i, j] = side[i]
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One normalised grid per crop layer; layer i has ``int(n / scale**i)`` points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` (ints) and their layer index.

    Layer 0 is the whole image; layer i ≥ 1 has ``(2**i)²`` overlapping crops whose
    overlap is ``overlap_ratio * short_side * 2 / 2**i`` pixels. Order: whole image, then
    per layer x0-major (all y0 for the first x0, ...), as segment_anything.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers: list[int] = [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = crop_len(im_w, n_side, overlap)
        crop_h = crop_len(im_h, n_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Box) -> torch.Tensor:
    """Shift ``...×4`` XYXY boxes from crop to image coordinates."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Box) -> torch.Tensor:
    """Shift ``...×2`` points ``(x, y)`` from crop to image coordinates."""
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: Box, orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad ``B×h×w`` crop masks to ``B×orig_h×orig_w`` at the crop's position."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return F.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Box, orig_box: Box, atol: float = 20.0
) -> torch.Tensor:
    """``N`` bools: box (crop coordinates, ``N×4``) lies within ``atol`` px of an edge of
    the crop that is not also an edge of the image."""
    crop_t = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig_t = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    b = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(b, crop_t[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(b, orig_t[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)


# --- boxes ---------------------------------------------------------------------------


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive max pixel, int64) of ``...×H×W`` bool masks → ``...×4``.

    An empty mask gives ``[0, 0, 0, 0]``. Same numbers as segment_anything's helper.
    """
    shape = masks.shape
    if masks.numel() == 0:
        return torch.zeros(*shape[:-2], 4, dtype=torch.int64, device=masks.device)
    h, w = shape[-2:]
    m = masks.reshape(-1, h, w)
    rows = m.any(dim=-1)  # B×H
    cols = m.any(dim=-2)  # B×W
    nonempty = rows.any(dim=-1)
    # argmax returns the first maximal index: first True from each end.
    top = rows.to(torch.uint8).argmax(dim=-1)
    bottom = h - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)
    left = cols.to(torch.uint8).argmax(dim=-1)
    right = w - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)
    out = torch.stack([left, top, right, bottom], dim=-1).to(torch.int64)
    out = out * nonempty.unsqueeze(-1)
    return out.reshape(*shape[:-2], 4)


def box_xyxy_to_xywh(box: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``...×4`` XYXY → XYWH with ``w = x1 - x0`` (segment_anything's record convention)."""
    out = box.clone() if isinstance(box, torch.Tensor) else np.array(box, copy=True)
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas ``(x1-x0)*(y1-y0)`` of ``N×4`` XYXY boxes (dtype kept)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``N×4`` and ``M×4`` XYXY boxes → ``N×M`` (0 where a union is empty)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; same result as ``torchvision.ops.nms`` on CPU.

    Boxes are visited in the order of ``scores.sort(descending=True)`` (the very sort
    call torchvision makes, so ties come in the same order); a box is dropped when its
    IoU with an already kept box is strictly greater than ``iou_threshold``. IoUs are
    computed in the boxes' dtype with torchvision's operation order, so borderline cases
    agree bit for bit.

    Args:
        boxes: ``N×4`` float XYXY; scores: ``N`` of the same dtype.
    Returns:
        int64 indices of kept boxes, highest score first.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    order = scores.sort(dim=0, descending=True)[1]
    b = boxes.detach().cpu()[order].numpy()
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    n = len(b)
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    zero = b.dtype.type(0)
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 == n:
            break
        xx1 = np.maximum(x1[i], x1[i + 1 :])
        yy1 = np.maximum(y1[i], y1[i + 1 :])
        xx2 = np.minimum(x2[i], x2[i + 1 :])
        yy2 = np.minimum(y2[i], y2[i + 1 :])
        inter = np.maximum(zero, xx2 - xx1) * np.maximum(zero, yy2 - yy1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ovr = inter / (areas[i] + areas[i + 1 :] - inter)
        # torchvision compares the float IoU against a double threshold.
        suppressed[i + 1 :] |= ovr.astype(np.float64) > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS applied independently per category ``idxs``; same semantics as
    ``torchvision.ops.batched_nms`` on CPU, including its two code paths (coordinate
    offset trick up to 1000 boxes, per-category loop plus a final score sort above).

    Args:
        boxes: ``N×4`` float XYXY; scores: ``N``; idxs: ``N`` integer categories.
    Returns:
        int64 indices of kept boxes, by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if boxes.numel() > 4000:
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for cls in torch.unique(idxs):
            curr = torch.where(idxs == cls)[0]
            keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    max_coord = boxes.max()
    offsets = idxs.to(boxes) * (max_coord + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# --- logits → masks ------------------------------------------------------------------


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``mask_threshold ± offset``: ``...×H×W`` → ``...``.

    The high-threshold mask lies inside the low-threshold one, so the IoU is a ratio of
    pixel counts. float32; NaN when both are empty (as the reference).
    """
    flat = logits.flatten(-2)
    inter = (flat > (mask_threshold + offset)).view(torch.uint8).sum(-1, dtype=torch.int32)
    union = (flat > (mask_threshold - offset)).view(torch.uint8).sum(-1, dtype=torch.int32)
    return inter / union


def upsample_logits(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    img_size: int = 1024,
) -> torch.Tensor:
    """``Sam.postprocess_masks`` without the wasted work, bit-identical results: the one
    low-res → image-size path of the predictor, the generators and the web app.

    The reference resizes ``B×C×h×w`` low-res logits bilinearly to ``img_size²``, crops
    the padding away (keeping ``input_size``), then resizes bilinearly to
    ``original_size``. Here, when ``img_size`` is an integer multiple of the low-res side
    (always: 1024 / 256), only the low-res rows/columns that feed the kept region (+1 for
    the bilinear neighbour) are upsampled — bilinear weights with ``align_corners=False``
    depend only on the output index and the (unchanged) scale, so the values are
    identical. The second resize is skipped when it is the identity (input size ==
    original size). (A single combined resample moves ~0.5 % of mask pixels on the golden
    cases, so it is not used.)

    Returns:
        ``B×C×H0×W0`` float32 logits, contiguous.
    """
    if low_res.dtype != torch.float32:
        low_res = low_res.float()
    h, w = low_res.shape[-2:]
    ih, iw = int(input_size[0]), int(input_size[1])
    if img_size % h == 0 and img_size % w == 0 and img_size // h == img_size // w:
        s = img_size // h
        r = min(h, -(-ih // s) + 1)
        c = min(w, -(-iw // s) + 1)
        x = F.interpolate(low_res[..., :r, :c], (r * s, c * s), mode="bilinear", align_corners=False)
    else:  # generic path: exactly the reference
        x = F.interpolate(low_res, (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., :ih, :iw]
    if (ih, iw) != (int(original_size[0]), int(original_size[1])):
        x = F.interpolate(x, tuple(int(v) for v in original_size), mode="bilinear", align_corners=False)
    return x.contiguous()


# --- run-length encodings --------------------------------------------------------------


def mask_to_rle_uncompressed(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Uncompressed COCO RLEs (column-major runs, first run = zeros) of ``B×H×W`` bool
    masks: ``[{"size": [H, W], "counts": [int, ...]}]``, as segment_anything's
    ``mask_to_rle_pytorch`` — but one vectorised pass for the whole batch."""
    b, h, w = masks.shape
    if b == 0:
        return []
    flat = masks.transpose(1, 2).reshape(b, h * w)
    change = (flat[:, 1:] != flat[:, :-1]).nonzero()  # (k, 2), sorted by mask then position
    per_mask = torch.bincount(change[:, 0], minlength=b).tolist()
    positions = (change[:, 1] + 1).numpy()
    first = flat[:, 0].tolist()
    out = []
    start = 0
    for i in range(b):
        idx = positions[start : start + per_mask[i]]
        start += per_mask[i]
        bounds = np.concatenate([[0], idx, [h * w]])
        counts = np.diff(bounds).tolist()
        if first[i]:
            counts = [0] + counts
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """H×W bool mask of an uncompressed RLE (``counts`` a list)."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


def area_from_rle(rle: dict[str, Any]) -> int:
    """Foreground pixel count of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE → compressed COCO RLE with ``counts`` as a JSON-friendly str."""
    h, w = uncompressed["size"]
    rle = mask_utils.frPyObjects(uncompressed, h, w)
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("utf-8")}


# --- small-region clean-up -------------------------------------------------------------

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``mode="islands"``) smaller than
    ``area_thresh`` pixels in an H×W bool mask; 8-connectivity.

    With ``"islands"``, if every island is small the largest one is kept. Returns the
    (possibly new) mask and whether it changed — segment_anything's semantics, with
    ``scipy.ndimage.label`` in place of OpenCV.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = np.logical_xor(mask, holes)
    regions, n_labels = ndimage.label(working, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(regions.ravel(), minlength=n_labels + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        fill = np.concatenate([[0], small])
    else:
        fill = np.setdiff1d(np.arange(1, n_labels + 1), small)
        if len(fill) == 0:
            fill = np.array([int(np.argmax(sizes)) + 1])
    lut = np.zeros(n_labels + 1, dtype=bool)
    lut[fill] = True
    return lut[regions], True
