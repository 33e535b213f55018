"""Built-in object discovery: the proposal head, its box coding, training, storage and use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketsam import build_sam
from pocketsam.checkpoints import HEAD_PREFIX, save_checkpoint
from pocketsam.cli import main
from pocketsam.errors import CheckpointWarning
from pocketsam.everything import ObjectAwareMaskGenerator
from pocketsam.models import MODEL_CONFIGS, create_model
from pocketsam.models.proposal_head import ProposalHead
from pocketsam.proposals.coding import decode_boxes, encode_targets, head_loss
from pocketsam.train.proposals import ProposalTrainStep


def _perfect_outputs(t: dict[str, torch.Tensor]) -> torch.Tensor:
    logit = torch.where(t["centre"], torch.tensor(10.0), torch.tensor(-10.0))
    return torch.cat([logit[:, None], t["size"], t["offset"]], 1)


def test_box_coding_round_trip():
    boxes = torch.tensor([[[10.0, 20.0, 49.0, 39.0], [100.0, 60.0, 107.0, 75.0], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, False]])
    t = encode_targets(boxes, valid, grid=32, stride=4.0)
    assert t["centre"].sum() == 2 and t["heat"].max() == 1.0 and (t["heat"] >= 0).all()
    (decoded, scores), = decode_boxes(_perfect_outputs(t), stride=4.0, top_k=10, min_score=0.5)
    expected = torch.tensor([[10.0, 20.0, 50.0, 40.0], [100.0, 60.0, 108.0, 76.0]])  # continuous edges
    order = decoded[:, 0].argsort()
    torch.testing.assert_close(decoded[order], expected, atol=1e-4, rtol=0)
    assert (scores > 0.99).all()
    # the loss of the perfect output is (almost) nothing, and far below a blank one's
    perfect, _ = head_loss(_perfect_outputs(t), t)
    blank, _ = head_loss(torch.zeros_like(_perfect_outputs(t)), t)
    assert perfect < 0.01 < blank


@pytest.mark.parametrize("grid", [4, 16, 64])
def test_head_output_shapes_follow_the_embedding(grid):
    head = ProposalHead(256, 16, upsample=2)
    assert head(torch.zeros(2, 256, grid, grid)).shape == (2, 5, 4 * grid, 4 * grid)
    again = ProposalHead.from_state_dict(head.state_dict())
    assert again.config == head.config == {"in_dim": 256, "hidden": 16, "upsample": 2}


def _tiny_sam_with_head(seed=0):
    torch.manual_seed(seed)
    sam = create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval()
    sam.proposal_head = ProposalHead(256, 16, upsample=2)
    return sam


def test_a_short_training_run_lowers_the_loss():
    sam = _tiny_sam_with_head()
    step = ProposalTrainStep(sam)
    torch.manual_seed(1)
    batch = {
        "teacher_embedding": torch.randn(4, 256, 4, 4),
        "boxes": torch.tensor([[[4.0, 4.0, 20.0, 30.0], [30.0, 30.0, 60.0, 50.0]]]).repeat(4, 1, 1),
        "valid": torch.ones(4, 2, dtype=torch.bool),
        "size": torch.tensor([[64, 64]] * 4),
    }
    opt = torch.optim.Adam(sam.proposal_head.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    metrics = step.evaluate(batch)
    assert metrics["val_recall50"] > 0.5, metrics


def test_a_head_round_trips_and_official_exports_drop_it(tmp_path):
    sam = _tiny_sam_with_head()
    path = save_checkpoint(sam, tmp_path / "with_head.safetensors")
    back = build_sam(checkpoint=path)
    assert back.has_proposal_head
    from pocketsam.proposals import HeadProposals

    assert HeadProposals(back.proposal_head).score_thresh == 0.4  # its recommendation travels with it
    for k, v in sam.proposal_head.state_dict().items():
        assert torch.equal(back.proposal_head.state_dict()[k], v)
    # an official architecture's .pth keeps exactly the official keys
    torch.manual_seed(0)
    official = create_model("vit_t")
    official.proposal_head = ProposalHead(256, 8, upsample=1)
    with pytest.warns(CheckpointWarning, match="does not record the proposal head"):
        save_checkpoint(official, tmp_path / "mobile_sam.pth")
    sd = torch.load(tmp_path / "mobile_sam.pth", weights_only=True)
    assert set(sd) == set(create_model("vit_t").state_dict())
    assert not any(k.startswith(HEAD_PREFIX) for k in sd)
    assert not build_sam(checkpoint=tmp_path / "mobile_sam.pth").has_proposal_head


def test_boxes_mode_uses_the_head_and_says_so(tmp_path, capsys):
    sam = _tiny_sam_with_head()
    with torch.no_grad():  # one confident centre in the middle, a 24-px box
        sam.proposal_head.out.bias.copy_(torch.tensor([-10.0, np.log(1.5), np.log(1.5), 0.5, 0.5]))
        sam.proposal_head.out.weight.zero_()
    sam.proposal_head.score_thresh.fill_(0.25)
    assert ObjectAwareMaskGenerator(sam).score_thresh == 0.25  # the head's recommendation
    assert ObjectAwareMaskGenerator(sam, proposals=[[0, 0, 8, 8]]).score_thresh == 0.4  # other sources: 0.4
    generator = ObjectAwareMaskGenerator(sam, score_thresh=0.0)
    image = np.zeros((64, 64, 3), np.uint8)
    generator.generate(image)
    assert generator.last_stats["proposals"]["raw"] == 0  # nothing above the default min score
    sam.proposal_head.out.bias.data[0] = 5.0
    records = generator.generate(image)
    assert generator.last_stats["proposals"]["raw"] > 0 and len(records) > 0
    ckpt = save_checkpoint(sam, tmp_path / "head.safetensors")
    img = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(image).save(img)
    assert main(["everything", str(img), "--checkpoint", str(ckpt), "--mode", "boxes", "--out", str(tmp_path / "o")]) == 0
    assert "proposals: the checkpoint's own proposal head" in capsys.readouterr().out


def test_boxes_mode_without_proposals_gives_one_clear_error(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)), tmp_path / "plain.safetensors")
    img = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert main(["everything", str(img), "--checkpoint", str(ckpt), "--mode", "boxes", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no proposal head" in err and "--boxes" in err and "train-proposals" in err and "Traceback" not in err
    with pytest.raises(Exception, match="no box proposals"):
        ObjectAwareMaskGenerator(build_sam(checkpoint=ckpt)).generate(np.zeros((32, 32, 3), np.uint8))


def test_export_keeps_the_head_unless_told(tmp_path):
    sam = _tiny_sam_with_head()
    src = save_checkpoint(sam, tmp_path / "src.safetensors")
    assert main(["export", str(src), "--out", str(tmp_path / "kept.safetensors"), "--dtype", "fp16"]) == 0
    assert build_sam(checkpoint=tmp_path / "kept.safetensors").has_proposal_head
    assert main(["export", str(src), "--out", str(tmp_path / "gone.safetensors"), "--drop-proposal-head"]) == 0
    assert not build_sam(checkpoint=tmp_path / "gone.safetensors").has_proposal_head
