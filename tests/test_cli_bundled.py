"""The bundled model has a name, ``bundled``, that every checkpoint argument takes, and no
checkpoint means the bundled model everywhere, ``export`` included (issue 22 items 3, 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pocketsam.cli import main


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


@pytest.fixture(scope="module")
def bundled():
    from pocketsam import build_sam

    return build_sam()


def test_the_name_resolves_to_the_bundled_file(monkeypatch, tmp_path: Path) -> None:
    from pocketsam.checkpoints import default_checkpoint
    from pocketsam.cli.common import resolve_checkpoint
    from pocketsam.weights import is_bundled, resolve_checkpoint_name

    for name in ("bundled", "Bundled", " bundled "):
        assert resolve_checkpoint_name(name) == default_checkpoint()
    assert resolve_checkpoint("bundled") == resolve_checkpoint(None) == default_checkpoint()
    assert is_bundled(None) and is_bundled("bundled") and is_bundled(default_checkpoint())
    assert not is_bundled(tmp_path / "other.pt") and not is_bundled("mobile_sam")
    # a file called "bundled" in the working folder is that file, as for any name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundled").write_bytes(b"x")
    assert resolve_checkpoint_name("bundled") == Path("bundled")


def test_an_installation_without_it_says_so(monkeypatch, tmp_path: Path) -> None:
    import pocketsam.weights as ckpt
    from pocketsam.errors import CheckpointError
    from pocketsam.weights import resolve_checkpoint_name

    monkeypatch.setattr(ckpt, "ASSETS", tmp_path / "no_assets")
    with pytest.raises(CheckpointError, match="no bundled model"):
        resolve_checkpoint_name("bundled")


def test_library_loaders_take_the_name(bundled) -> None:
    from pocketsam import build_sam
    from pocketsam.eval.runners import load_model

    _same_weights(build_sam(checkpoint="bundled"), bundled)
    _same_weights(load_model("bundled"), bundled)  # eval --checkpoint / --against
    assert build_sam(checkpoint="bundled").everything_defaults == bundled.everything_defaults


@pytest.mark.parametrize("argv", [[], ["bundled"]], ids=["no checkpoint", "bundled"])
def test_export_uses_the_bundled_model(capsys, tmp_path: Path, bundled, argv: list[str]) -> None:
    """README: `export` with no checkpoint exports the bundled model (not random weights,
    also with --model-type)."""
    from pocketsam import build_sam

    out = tmp_path / "model.safetensors"
    assert main(["export", *argv, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    exported = build_sam(checkpoint=out)
    _same_weights(exported, bundled)
    assert exported.everything_defaults == bundled.everything_defaults

    typed = tmp_path / "typed.safetensors"
    assert main(["export", *argv, "--model-type", "pocketsam_tiny", "--out", str(typed)]) == 0
    _same_weights(build_sam(checkpoint=typed), bundled)


def test_train_init_takes_the_name(monkeypatch, tmp_path: Path) -> None:
    """``train --init bundled`` hands the engine the bundled file (it reads the path itself)."""
    import pocketsam.cli.train as train_cli
    from pocketsam.checkpoints import default_checkpoint

    seen = {}

    def stop(args, **fixed):
        seen.update(fixed)
        raise SystemExit(0)

    monkeypatch.setattr(train_cli, "engine_config", stop)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--init", "bundled", "--out", str(tmp_path / "run")])
    assert seen["init"] == str(default_checkpoint())
