"""Checkpoint metadata: the safetensors header, legacy ``pocketsam.*`` tensors, and .pth
files that the reference implementations load strictly."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import tiny_config
from safetensors import safe_open
from safetensors.torch import save, save_file

import pocketsam
from pocketsam import build_sam
from pocketsam.checkpoints import HEADER_KEY, checkpoint_contents, checkpoint_metadata, default_checkpoint, export_state_dict, peek_checkpoint, read_checkpoint, read_metadata, save_checkpoint
from pocketsam.errors import CheckpointError, CheckpointWarning
from pocketsam.models import DecoderConfig, SamConfig, ViTConfig, create_model
from pocketsam.models.proposal_head import ProposalHead

THRESHOLDS = {"pred_iou_thresh": 0.4, "stability_score_thresh": 0.65, "high_score_thresh": 1.5}
# a ViT without relative positions needs every hint there is (heads, window, global blocks, input size)
HINTED_VIT = SamConfig(ViTConfig(img_size=256, embed_dim=64, depth=2, num_heads=4, use_rel_pos=False, use_abs_pos=False,
                                 window_size=4, global_attn_indexes=(1,), out_chans=32),
                       DecoderConfig(transformer_mlp_dim=64, transformer_num_heads=4, multimask_only=True),
                       prompt_embed_dim=32)


def _model(config, head: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(config).eval()
    model.everything_defaults = dict(THRESHOLDS)
    if head:
        model.proposal_head = ProposalHead(config.prompt_embed_dim, 8, upsample=1, score_thresh=0.3)
    return model


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _header(path) -> dict | None:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def _reference_module(shapes: dict[str, list[int]], device: str = "cpu") -> torch.nn.Module:
    """A module whose state_dict has exactly the keys and shapes recorded from the reference
    implementation (segment_anything / MobileSAM; TinySAM's code builds MobileSAM's): loading
    into it with ``strict=True`` is what the reference loaders do."""
    root = torch.nn.Module()
    for key, shape in shapes.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, torch.empty(shape, device=device))
    return root


# ------------------------------------------------------------------ safetensors header
@pytest.mark.parametrize("config", [tiny_config(), HINTED_VIT], ids=["tinyvit", "vit_norel"])
def test_safetensors_keep_metadata_in_the_header_and_round_trip_it(tmp_path, config):
    model = _model(config, head=True)
    path = save_checkpoint(model, tmp_path / "m.safetensors", dtype=torch.float16)

    with safe_open(str(path), framework="pt") as f:
        keys, header = list(f.keys()), f.metadata()
    assert not any(k.startswith("pocketsam.") for k in keys)  # no metadata tensors any more
    assert any(k.startswith("proposal_head.") for k in keys)  # the head is weights, it stays a tensor
    record = json.loads(header[HEADER_KEY])
    assert record["version"] == 1 and record["everything"] == THRESHOLDS
    assert record["config"] and all(type(v) is int for v in record["config"].values())

    expected = checkpoint_metadata(model)
    assert read_checkpoint(path)[1] == expected == read_metadata(path) == peek_checkpoint(path)[1]
    back = build_sam(checkpoint=path)
    assert back.config == config and back.everything_defaults == THRESHOLDS
    assert back.proposal_head is not None and float(back.proposal_head.score_thresh) == pytest.approx(0.3)


def test_official_safetensors_carry_no_config_hints_but_do_carry_thresholds(tmp_path):
    model = _model("tinysam")
    path = save_checkpoint(model, tmp_path / "anything.safetensors")
    record = json.loads(_header(path)[HEADER_KEY])
    assert record == {"version": 1, "config": {"multimask_only": 1}, "everything": THRESHOLDS}
    back = build_sam(checkpoint=path)  # TinySAM's behaviour recorded: no file name needed
    assert back.mask_decoder.multimask_only and back.everything_defaults == THRESHOLDS and _same_weights(back, model)


# ---------------------------------------------------------------- legacy tensor files
@pytest.mark.parametrize("config", [tiny_config(), HINTED_VIT], ids=["tinyvit", "vit_norel"])
def test_legacy_tensor_metadata_loads_as_the_header_does(tmp_path, config):
    model = _model(config, head=True)
    new = save_checkpoint(model, tmp_path / "new.safetensors")
    legacy = tmp_path / "legacy.safetensors"
    save_file(export_state_dict(model), str(legacy))  # how pocketsam wrote safetensors before the header
    assert _header(legacy) is None
    pth = save_checkpoint(model, tmp_path / "legacy.pth")  # non-official .pth: still tensors

    for old in (legacy, pth):
        assert read_checkpoint(old)[1] == read_checkpoint(new)[1] == read_metadata(old)
        assert sorted(peek_checkpoint(old)[0]) == sorted(peek_checkpoint(new)[0])
        back = build_sam(checkpoint=old)
        assert back.config == config and back.everything_defaults == THRESHOLDS
        assert _same_weights(back, build_sam(checkpoint=new))


def test_the_bundled_model_keeps_its_legacy_tensor_metadata():
    path = default_checkpoint()
    assert _header(path) is None  # the shipped asset is not rewritten: the legacy reader serves it
    meta = read_metadata(path)
    assert meta == read_checkpoint(path)[1] == {
        "img_size": 256, "layer0_heads": 1,
        "everything.pred_iou_thresh": 0.4, "everything.stability_score_thresh": 0.6, "everything.high_score_thresh": 1.0}
    sam = build_sam()
    assert sam.img_size == 256 and sam.has_proposal_head
    assert sam.everything_defaults == {"pred_iou_thresh": 0.4, "stability_score_thresh": 0.6, "high_score_thresh": 1.0}


def test_header_and_legacy_tensors_merge_and_must_agree(tmp_path):
    model = _model(tiny_config())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    header = {HEADER_KEY: json.dumps({"version": 1, "config": {"img_size": 256, "layer0_heads": 1},
                                      "everything": {"pred_iou_thresh": 0.5}}), "format": "pt"}
    both = tmp_path / "both.safetensors"
    both.write_bytes(save({**state, "pocketsam.everything.high_score_thresh": torch.tensor(2.0, dtype=torch.float64),
                           "pocketsam.img_size": torch.tensor(256)}, metadata=header))
    assert build_sam(checkpoint=both).everything_defaults == {"pred_iou_thresh": 0.5, "high_score_thresh": 2.0}

    clash = tmp_path / "clash.safetensors"
    clash.write_bytes(save({**state, "pocketsam.img_size": torch.tensor(512)}, metadata=header))
    for read in (read_checkpoint, read_metadata, lambda p: build_sam(checkpoint=p)):
        with pytest.raises(CheckpointError, match=r"records metadata 'img_size' twice with different values "
                                                   r"\(256 in its header, 512 as tensor 'pocketsam.img_size'\)"):
            read(clash)


# ------------------------------------------------------------------ malformed headers
MALFORMED = {
    "not_json": ("{version: 1", "the 'pocketsam' value is not JSON"),
    "a_list": ("[1, 2]", "is a JSON list, not an object"),
    "no_version": ('{"config": {}}', "'version' is None, not a positive integer"),
    "version_text": ('{"version": "1"}', "'version' is '1', not a positive integer"),
    "version_bool": ('{"version": true}', "'version' is True, not a positive integer"),
    "config_list": ('{"version": 1, "config": [256]}', "'config' is a JSON list, not an object"),
    "config_float": ('{"version": 1, "config": {"img_size": 256.5}}', "'config.img_size' is 256.5, not an integer"),
    "config_text": ('{"version": 1, "config": {"img_size": "256"}}', "'config.img_size' is \"256\", not an integer"),
    "config_bool": ('{"version": 1, "config": {"multimask_only": true}}', "'config.multimask_only' is true, not an integer"),
    "config_dotted": ('{"version": 1, "config": {"everything.pred_iou_thresh": 1}}', "has the invalid name"),
    "threshold_text": ('{"version": 1, "everything": {"pred_iou_thresh": "high"}}',
                       "'everything.pred_iou_thresh' is \"high\", not a number"),
    "threshold_null": ('{"version": 1, "everything": {"pred_iou_thresh": null}}', "is null, not a number"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_header_is_one_clear_error(tmp_path, tiny_sam, name, capsys):
    value, message = MALFORMED[name]
    state = {k: v.contiguous() for k, v in tiny_sam.state_dict().items()}
    path = tmp_path / "bad.safetensors"
    path.write_bytes(save(state, metadata={HEADER_KEY: value}))
    for read in (read_checkpoint, read_metadata, lambda p: build_sam(checkpoint=p),
                 lambda p: pocketsam.load_state_dict(tiny_sam, p)):
        with pytest.raises(CheckpointError) as info:
            read(path)
        text = str(info.value)
        assert text.startswith(f"checkpoint '{path}' has malformed pocketsam metadata in its safetensors header: ")
        assert message in text and "\n" not in text

    from pocketsam.cli import main

    assert main(["export", str(path), "--out", str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and message in err and err.count("\n") == 1


def test_a_newer_header_version_asks_for_a_newer_pocketsam(tmp_path, tiny_sam):
    state = {k: v.contiguous() for k, v in tiny_sam.state_dict().items()}
    path = tmp_path / "future.safetensors"
    path.write_bytes(save(state, metadata={HEADER_KEY: json.dumps({"version": 2, "config": {"img_size": 256}})}))
    with pytest.raises(CheckpointError, match=r"metadata version 2; this pocketsam reads version 1 and older — upgrade"):
        read_metadata(path)


def test_an_invalid_threshold_in_the_header_is_ignored_with_a_warning_as_in_tensors(tmp_path, tiny_sam):
    state = {k: v.contiguous() for k, v in tiny_sam.state_dict().items()}
    path = tmp_path / "nan.safetensors"
    record = {"version": 1, "config": {"img_size": 256, "layer0_heads": 1},
              "everything": {"pred_iou_thresh": float("nan"), "high_score_thresh": 2.0}}
    path.write_bytes(save(state, metadata={HEADER_KEY: json.dumps(record)}))  # json writes NaN
    with pytest.warns(CheckpointWarning, match=r"the pred_iou_thresh recorded in checkpoint '.*nan.safetensors'"):
        assert build_sam(checkpoint=path).everything_defaults == {"high_score_thresh": 2.0}


# --------------------------------------------------------------------------- .pth files
@pytest.mark.parametrize("model_type", ["vit_t", "tinysam"])
def test_official_pth_loads_strictly_in_the_reference_code(tmp_path, official_shapes, model_type):
    """An official architecture's .pth holds exactly the reference keys (no thresholds, no
    proposal head, no metadata) and loads with the reference's ``load_state_dict(strict=True)``."""
    reference = official_shapes["vit_t"]
    model = _model(model_type, seed=1)
    model.proposal_head = ProposalHead(256, 8, upsample=1)
    name = "tinysam_mine.pth" if model_type == "tinysam" else "mobile_sam.pth"
    with pytest.warns(CheckpointWarning, match=r"does not record the recommended 'everything' thresholds; "
                                               r"the proposal head: write a .safetensors file to keep them"):
        path = save_checkpoint(model, tmp_path / name, dtype=torch.float16)

    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert list(sd) == list(reference)  # the reference keys, in the reference order, nothing else
    ref = _reference_module(reference)
    ref.load_state_dict(sd, strict=True)
    assert torch.equal(ref.state_dict()["mask_decoder.iou_token.weight"],
                       model.mask_decoder.iou_token.weight.detach().half().float())

    back = build_sam(checkpoint=path)  # pocketsam: architecture from the shapes, TinySAM from the name
    assert back.config == model.config and back.everything_defaults == {} and not back.has_proposal_head
    assert read_metadata(path) == {}


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_official_sam_pth_contents_are_the_reference_keys(official_shapes, model_type):
    """The same for SAM's ViTs, without allocating them: what save_checkpoint would write."""
    reference = official_shapes[model_type]
    with torch.device("meta"):
        model = create_model(model_type)
        model.proposal_head = ProposalHead(256, 8, upsample=1)
    model.everything_defaults = dict(THRESHOLDS)
    with pytest.warns(CheckpointWarning, match="holds only the reference keys"):
        state, meta = checkpoint_contents(model, "sam.pth")
    assert meta == {} and {k: list(v.shape) for k, v in state.items()} == reference and list(state) == list(reference)
    _reference_module(reference, "meta").load_state_dict(state, strict=True)
    _, meta = checkpoint_contents(model, "sam.safetensors")
    assert meta == {f"everything.{k}": v for k, v in THRESHOLDS.items()}


def test_a_tinysam_pth_without_a_tinysam_name_warns_that_the_behaviour_is_not_recorded(tmp_path, capsys):
    model = create_model("tinysam").eval()
    with pytest.warns(CheckpointWarning, match=r"'student.pth' holds only the reference keys of an official "
                                               r"architecture, so it does not record TinySAM's decoder behaviour"):
        path = save_checkpoint(model, tmp_path / "student.pth")
    assert not build_sam(checkpoint=path).mask_decoder.multimask_only
    assert build_sam("tinysam", checkpoint=path).mask_decoder.multimask_only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_checkpoint(model, tmp_path / "tinysam_student.pth")
        save_checkpoint(model, tmp_path / "student.safetensors")

    # the export command says so in one line, and still writes the file
    from pocketsam.cli import main

    out = tmp_path / "mine.pth"
    assert main(["export", str(tmp_path / "student.safetensors"), "--out", str(out), "--pred-iou-thresh", "0.5"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 'mine.pth' holds only the reference keys") and err.count("\n") == 1
    assert "thresholds; TinySAM's decoder behaviour" in err and out.exists()


def test_non_official_pth_keeps_its_hints_for_pocketsams_strict_loaders(tmp_path):
    """Only pocketsam reads a non-official architecture, so its .pth keeps the metadata as
    ``pocketsam.*`` tensors and the head as ``proposal_head.*``; pocketsam's strict loaders
    (build_sam, pocketsam.load_state_dict) take them out before loading the weights."""
    model = _model(HINTED_VIT, head=True)
    path = save_checkpoint(model, tmp_path / "mine.pth")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    hints = {k for k in sd if k.startswith("pocketsam.")}
    assert hints == {f"pocketsam.{k}" for k in checkpoint_metadata(model)}
    assert {"pocketsam.vit_num_heads", "pocketsam.global_1", "pocketsam.everything.pred_iou_thresh"} <= hints
    with pytest.raises(RuntimeError, match="Unexpected key"):  # a plain strict load does not know them…
        create_model(HINTED_VIT).load_state_dict(sd, strict=True)

    for source in (path, sd):  # …pocketsam's does, from the file or from the loaded dict
        target = create_model(HINTED_VIT)
        assert pocketsam.load_state_dict(target, source) is target
        assert _same_weights(target, model) and target.everything_defaults == THRESHOLDS
        assert torch.equal(target.proposal_head.body[0].weight, model.proposal_head.body[0].weight)
    assert _same_weights(build_sam(checkpoint=path), model)

    # the hints are checked: weights of the same shapes but another configuration are refused
    other = replace_heads(HINTED_VIT, 8)
    with pytest.raises(CheckpointError, match=r"records another configuration \(decoder\.transformer_num_heads: "
                                               r"checkpoint 4 vs model 8\)"):
        pocketsam.load_state_dict(create_model(other), path)


def replace_heads(config, heads):
    from dataclasses import replace

    return replace(config, decoder=replace(config.decoder, transformer_num_heads=heads))


def test_int8_artifact_weights_go_through_the_same_reader(tmp_path):
    """An int8 artifact's float model is a safetensors file like any other: its metadata (new
    header or legacy tensors) is read by the same code; the loader layer finds it in the
    artifact folder (checkpoints read files only)."""
    from pocketsam.runtime.artifact import META_NAME, WEIGHTS_NAME
    from pocketsam.runtime.load import float_weights_file

    model = _model(tiny_config())
    for name, write in (("new", lambda p: save_checkpoint(model, p)),
                        ("legacy", lambda p: save_file(export_state_dict(model), str(p)))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / META_NAME).write_text("{}")
        write(folder / WEIGHTS_NAME)
        files = {float_weights_file(folder), float_weights_file(folder / META_NAME)}
        assert files == {folder / WEIGHTS_NAME}
        assert read_metadata(folder / WEIGHTS_NAME) == checkpoint_metadata(model)
        assert "pocketsam.img_size" not in peek_checkpoint(folder / WEIGHTS_NAME)[0]
