"""Distillation pieces: losses, hard prompts, hard mask weights, the teacher cache, steps."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from pocketsam.embedding_cache import CacheError, CacheTransform, TeacherCache, build_cache, cache_key
from pocketsam.train.embeddings import flip_content, view_content
from pocketsam.distill.losses import (
    embedding_loss, embedding_loss_and_mse, fine_part, hard_mask_weights, logit_loss, mask_disagreement, token_loss,
    token_loss_and_mse,
)
from pocketsam.distill.step import EncoderDistillStep, FullDistillStep
from pocketsam.models import MODEL_CONFIGS, create_model
from pocketsam.train.prompts import correction_points


def test_embedding_loss_by_hand_and_across_grids():
    s = torch.zeros(1, 2, 2, 2)
    t = torch.zeros(1, 2, 2, 2)
    t[0, 0, 0, 0] = 2.0  # one of 8 values off by 2: MSE = 4 / 8
    assert embedding_loss(s, t).tolist() == [0.5]
    # a constant student at another grid is resized onto the teacher's without change
    assert embedding_loss(torch.full((1, 2, 4, 4), 3.0), torch.full((1, 2, 2, 2), 1.0)).tolist() == [4.0]


def test_detail_weight_adds_only_the_errors_fine_part():
    t = torch.zeros(1, 1, 3, 3)
    # an error constant over the grid has no fine part: the detail term adds nothing
    assert embedding_loss(t + 1.0, t, detail=5.0).tolist() == [1.0]
    # one cell off by 9 in the centre: its 3x3 mean is 1, so the fine part there is 8; each other
    # cell's window holds the centre once too (replicated edges never repeat it), so it is -1
    s = t.clone()
    s[0, 0, 1, 1] = 9.0
    assert fine_part(s)[0, 0].tolist() == [[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]
    plain = 81 / 9
    assert embedding_loss(s, t, detail=0.5).tolist() == [pytest.approx(plain + 0.5 * (64 + 8) / 9)]
    loss, mse = embedding_loss_and_mse(s, t, detail=0.5)  # what a step trains on, and what it logs
    assert loss.tolist() == embedding_loss(s, t, detail=0.5).tolist() and mse.tolist() == [plain]
    # l1 (TinySAM's paper): mean absolute errors, 9 / 9 and (8 + 8 x 1) / 9; the step still logs the MSE
    loss, mse = embedding_loss_and_mse(s, t, detail=0.5, distance="l1")
    assert loss.tolist() == [pytest.approx(1 + 0.5 * 16 / 9)] and mse.tolist() == [plain]


def test_token_loss_by_hand():
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    t = torch.tensor([[[1.0, 2.0], [3.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]])
    assert token_loss(s, t).tolist() == [1.0, 1.0]  # (2²)/4 and 4·1/4
    assert token_loss(s, t, "l1").tolist() == [0.5, 1.0]  # 2/4 and 4·1/4
    loss, mse = token_loss_and_mse(s, t, "l1")  # what a step trains on, and what it logs
    assert loss.tolist() == [0.5, 1.0] and mse.tolist() == [1.0, 1.0]


def test_logit_loss_is_soft_bce_by_hand():
    student = torch.zeros(1, 1, 1, 1)  # p = 0.5
    teacher = torch.full((1, 1, 1, 1), math.log(3.0))  # sigmoid = 0.75
    # BCE(0.5 | 0.75) = -(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2
    assert logit_loss(student, teacher).item() == pytest.approx(math.log(2.0), abs=1e-6)
    # it is smallest where the student's probability equals the teacher's
    near = logit_loss(teacher.clone(), teacher)
    assert near.item() < logit_loss(student, teacher).item()


def test_mask_disagreement_and_hard_mask_weights_on_constructed_masks():
    t = torch.full((3, 4, 4), -1.0)
    t[:, :2] = 1.0  # teacher: top half
    s = t.clone()  # prompt 0 agrees exactly
    s[1] = 1.0  # prompt 1: the whole image, IoU 8/16 → d = 0.5
    s[2] = -t[2]  # prompt 2: the other half, IoU 0 → d = 1
    d = mask_disagreement(s, t)
    assert d.tolist() == [0.0, 0.5, 1.0]
    w = hard_mask_weights(s, t, gamma=1.0)
    raw = torch.tensor([1.0, 1.5, 2.0])
    torch.testing.assert_close(w, raw / raw.mean())
    assert w.mean().item() == pytest.approx(1.0) and w[2] == w.max()
    assert hard_mask_weights(s, t, gamma=0.0).tolist() == [1.0, 1.0, 1.0]
    assert mask_disagreement(torch.full((1, 2, 2), -1.0), torch.full((1, 2, 2), -1.0)).tolist() == [0.0]


def test_hard_prompts_fall_only_in_the_disagreement_region_and_are_seeded():
    teacher = torch.zeros(2, 16, 16, dtype=torch.bool)
    teacher[:, 4:12, 4:12] = True
    student = teacher.clone()
    student[0, 4:12, 4:6] = False  # missed strip: positive clicks
    student[1, 0:2, :] = True  # false strip: negative clicks
    region = student ^ teacher
    for seed in range(20):
        xy, labels = correction_points(student, teacher, torch.Generator().manual_seed(seed), scale=4.0)
        for k in range(2):
            x, y = (xy[k, 0] / 4).long().tolist()
            assert region[k, y, x], (seed, k, x, y)
            assert labels[k, 0].item() == int(teacher[k, y, x])
    a = correction_points(student, teacher, torch.Generator().manual_seed(3), 4.0)
    b = correction_points(student, teacher, torch.Generator().manual_seed(3), 4.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_flip_content_keeps_the_padding_in_place():
    x = torch.arange(16.0).view(1, 4, 4)
    y = flip_content(x, (2, 3))
    assert y[0, 0].tolist() == [2.0, 1.0, 0.0, 3.0] and y[0, 2:].equal(x[0, 2:])
    assert flip_content(y, (2, 3)).equal(x)


def test_the_eight_views_are_the_mirrors_and_quarter_turns_of_the_content_alone():
    x = torch.zeros(1, 4, 4)
    x[0, :2, :3] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # valid (2, 3), padded bottom/right
    content = x[0, :2, :3]
    seen = {}
    for view in range(8):
        y, size = view_content(x, (2, 3), view)
        h, w = size
        assert size == ((3, 2) if view & 4 else (2, 3))
        assert y[0, h:].abs().sum() == 0 and y[0, :, w:].abs().sum() == 0  # the padding stays bottom/right
        seen[view] = y[0, :h, :w]
    assert torch.equal(seen[0], content) and torch.equal(seen[1], content.flip(-1))
    assert torch.equal(seen[2], content.flip(-2)) and torch.equal(seen[3], content.rot90(2))
    assert torch.equal(seen[4], content.T) and torch.equal(seen[7], content.rot90(2).T)
    assert torch.equal(seen[5], content.rot90(1)) and torch.equal(seen[6], content.rot90(-1))
    assert len({tuple(v.flatten().tolist()) for v in seen.values()}) == 8  # all distinct
    assert view_content(x, (2, 3), 1)[0].equal(flip_content(x, (2, 3)))


def _cache(tmp_path, sha="a" * 64, views=1, shape=(2, 2, 2)):
    return TeacherCache(tmp_path / "cache", sha, CacheTransform(64, views), shape)


def test_cache_round_trip_and_keys(tmp_path):
    images = [(tmp_path / f"{i}.png", f"{i:064x}") for i in range(5)]
    def encode(paths):  # 4 views, each marked by its number
        return torch.stack([torch.stack([torch.full((2, 2, 2), float(p.stem) + v / 8) for v in range(4)]) for p in paths])

    cache = _cache(tmp_path, views=4)
    assert build_cache(cache, images, encode, shard_size=2, batch_size=2, progress=False) == 5
    assert len(list(cache.dir.glob("shard_*.npy"))) == 3
    again = _cache(tmp_path, views=4)  # reopened from disk
    for path, sha in images:
        assert again.get(sha).dtype == np.float16
        assert [float(again.get(sha, v)[0, 0, 0]) for v in range(4)] == [float(path.stem) + v / 8 for v in range(4)]
    assert build_cache(again, images, encode, progress=False) == 0  # nothing recomputed
    # another teacher or transform never reads these embeddings: it has its own folder
    other = _cache(tmp_path, sha="b" * 64, views=4)
    assert other.dir != cache.dir and len(other) == 0
    assert len({_cache(tmp_path, views=v).dir for v in (1, 2, 4, 8)}) == 4
    # one or two views keep the key a cache built before views existed has (then: flip off / on)
    assert cache_key("0" * 64, CacheTransform(256, 2)).endswith("-256-flip-c30b7841")
    two = _cache(tmp_path, views=2)
    build_cache(two, images[:1], lambda paths: encode(paths)[:, :2], progress=False)
    with pytest.raises(CacheError, match="holds 2 view") as exc:
        two.get(images[0][1], 2)
    assert exc.value.hint == "build it with --views 4"
    with pytest.raises(CacheError, match="not 3"):
        _cache(tmp_path, views=3)


def test_dataset_reads_masks_only_from_masks_from_on_and_pairs_each_view_with_its_embedding(tmp_path):
    from pocketsam.cli import main
    from pocketsam.distill.data import DistillDataset
    from pocketsam.errors import InputError
    from pocketsam.train.embeddings import collect_images

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num-images", "4", "--size", "48,64", "--seed", "3",
                 "--workers", "1", "--quiet"]) == 0
    images = collect_images([tmp_path / "s"])
    encode = lambda paths: torch.arange(8.0).view(1, 8, 1, 1, 1).expand(len(paths), 8, 2, 2, 2)  # noqa: E731
    cache = _cache(tmp_path, views=8)
    build_cache(cache, [(im.path, im.sha256) for im in images], encode, progress=False)
    full = DistillDataset(images, cache, 64, max_instances=4, views=8, seed=0)
    lean = DistillDataset(images, cache, 64, max_instances=4, views=8, seed=0, masks_from=3)
    plain = DistillDataset(images, cache, 64, max_instances=4)
    seen = set()
    for seed in range(6):
        for i in range(4):
            a = full[(i, seed)]
            view = int(a["teacher_embedding"][0, 0, 0])
            seen.add(view)
            # each view of the image (and of its masks) comes with the teacher's embedding of that view
            p = plain[(i, seed)]
            image, size = view_content(p["image"], p["size"], view)
            masks, _ = view_content(p["masks"], p["size"], view)
            assert torch.equal(a["image"], image) and a["size"].tolist() == list(size) and torch.equal(a["masks"], masks)
            if seed == 0:
                b = lean[(i, 0)]
                assert torch.equal(a["image"], b["image"]) and torch.equal(a["teacher_embedding"], b["teacher_embedding"])
                assert len(a["masks"]) > 0 and len(b["masks"]) == (len(a["masks"]) if i >= 3 else 0)
    assert seen == set(range(8))  # every view is drawn
    with pytest.raises(InputError, match="--views 8"):
        DistillDataset(images, _cache(tmp_path, views=2), 64, max_instances=4, views=8)


def test_cache_detects_a_stale_manifest_and_a_changed_image(tmp_path):
    encode = lambda paths: torch.ones(len(paths), 1, 2, 2, 2)  # noqa: E731
    cache = _cache(tmp_path)
    build_cache(cache, [(tmp_path / "a.png", "1" * 64)], encode, progress=False)
    manifest = cache.dir / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace("a" * 64, "c" * 64))  # made by another teacher
    with pytest.raises(CacheError, match="another teacher or transform"):
        _cache(tmp_path)
    manifest.write_text(text)
    # an edited image has another content hash: it is missing, so recomputed, never served stale
    assert _cache(tmp_path).missing(["1" * 64, "2" * 64]) == ["2" * 64]


def test_damaged_shard_is_dropped_and_rebuilt(tmp_path):
    images = [(tmp_path / f"{i}.png", f"{i:064x}") for i in range(4)]
    encode = lambda paths: torch.stack([torch.full((1, 2, 2, 2), float(p.stem)) for p in paths])  # noqa: E731
    build_cache(_cache(tmp_path), images, encode, shard_size=2, progress=False)
    shard = _cache(tmp_path).dir / "shard_00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="1 shard.*2 image"):
        cache = _cache(tmp_path)
    assert cache.missing(s for _, s in images) == [images[2][1], images[3][1]]
    assert build_cache(cache, images, encode, progress=False) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = _cache(tmp_path)
    assert [float(fresh.get(s)[0, 0, 0]) for _, s in images] == [0.0, 1.0, 2.0, 3.0]


def test_killed_cache_build_loses_at_most_one_shard(tmp_path):
    images = [(tmp_path / f"{i}.png", f"{i:064x}") for i in range(6)]
    done = []

    def dying(paths):
        if len(done) == 2:
            raise KeyboardInterrupt  # the process dies here, mid-shard
        done.append(paths)
        return torch.ones(len(paths), 1, 2, 2, 2)

    with pytest.raises(KeyboardInterrupt):
        build_cache(_cache(tmp_path), images, dying, shard_size=2, batch_size=1, progress=False)
    cache = _cache(tmp_path)
    (cache.dir / ".shard_00001.npy.tmp99").write_bytes(b"half")  # what a kill mid-write leaves
    (cache.dir / "shard_00007.npy").write_bytes(b"unrecorded")
    assert len(cache) == 2
    assert build_cache(cache, images, lambda p: torch.ones(len(p), 1, 2, 2, 2), progress=False) == 4
    assert sorted(f.name for f in cache.dir.iterdir()) == ["manifest.json", "shard_00000.npy", "shard_00001.npy"]


def _pair(img_size=64):
    torch.manual_seed(0)
    config = MODEL_CONFIGS["pocketsam_nano"].with_img_size(img_size)
    teacher = create_model(config).eval()
    student = create_model(config)
    return student, teacher


def _batch(teacher, labeled=True, b=2, s=64):
    torch.manual_seed(1)
    image = torch.rand(b, 3, s, s) * 255
    size = torch.tensor([[s, s], [s, s - 16]])[:b]
    masks = torch.zeros(b, 2, s, s, dtype=torch.bool)
    masks[:, 0, 8:30, 10:40] = True
    masks[:, 1, 40:60, 5:20] = True
    valid = torch.full((b, 2), labeled)
    from pocketsam.train.step import encode_images

    with torch.no_grad():
        t_emb = encode_images(teacher, image, size)
    return {"image": image, "size": size, "masks": masks, "valid": valid, "teacher_embedding": t_emb}


def test_encoder_step_learns_the_teacher_embedding():
    student, teacher = _pair()
    step = EncoderDistillStep(student, teacher)
    batch = _batch(teacher)
    opt = torch.optim.AdamW(student.image_encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["embed_mse"])
    assert losses[-1] < 0.5 * losses[0], losses
    metrics = step.evaluate(batch)
    assert {"val_embed_mse", "val_miou_box", "val_miou_vs_teacher_box"} <= set(metrics)


@pytest.mark.parametrize("labeled", [True, False])
@pytest.mark.parametrize("hard", [True, False])
def test_full_step_runs_every_variant_and_reaches_every_part(labeled, hard):
    student, teacher = _pair()
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    step = FullDistillStep(student, teacher, prompts_per_image=3, rounds=2, hard_prompts=hard, hard_mask_weighting=hard)
    batch = _batch(teacher, labeled=labeled)
    loss, logs = step(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert logs["prompts"] == (4 if labeled else 6)
    for part in (student.image_encoder, student.mask_decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert not any(p.grad is not None for p in teacher.parameters())


def test_a_student_equal_to_its_teacher_has_nothing_left_to_learn():
    import copy

    _, teacher = _pair()
    student = copy.deepcopy(teacher)
    step = FullDistillStep(student, teacher, prompts_per_image=2, rounds=2)
    batch = _batch(teacher, labeled=True)
    loss, logs = step(batch, torch.Generator().manual_seed(0))
    assert logs["embed_mse"] < 1e-8 and logs["token_mse"] < 1e-8 and logs["iou_vs_teacher"] == pytest.approx(1.0)
    # the soft-target BCE then equals the teacher's own entropy (its minimum), hard points
    # find no disagreement and fall back to padding


def test_a_finer_student_grid_is_averaged_onto_the_teacher_grid():
    from pocketsam.distill.losses import resize_to

    fine = torch.zeros(1, 1, 4, 4)
    fine[..., ::2, ::2] = 4.0  # a checkerboard-like pattern a 2x2 grid should see as its mean, 1
    coarse = resize_to(fine, (2, 2))
    torch.testing.assert_close(coarse, torch.ones(1, 1, 2, 2))
