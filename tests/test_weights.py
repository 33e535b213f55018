"""Official weights by name: ``pocketsam download`` against a loopback HTTP server, and
``--checkpoint NAME`` / ``build_sam(checkpoint=NAME)`` resolution. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pocketsam import weights
from pocketsam.cli import main
from pocketsam.errors import CheckpointError, InputError
from pocketsam.weights import Weights

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _zip_checkpoint() -> bytes:
    """A whole zip file (the container of torch.save's format), 512 KiB of stored data."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data/0", PAYLOAD)
    return buf.getvalue()


CKPT = _zip_checkpoint()


class _Server:
    """A loopback file server with HTTP Range support. ``cut_next`` makes the next
    response stop after that many bytes (while promising the whole file);
    ``ignore_range`` answers every request with the whole file (200)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/w.pt": PAYLOAD, "/ckpt.pth": CKPT}
        self.cut_next: int | None = None
        self.ignore_range = False
        # misbehaviour of the next responses: "no-length" (no Content-Length, body ended by
        # closing: a cut is invisible), "lie" (announces more than it sends), "chunked-cut"
        # (a chunked stream without its last chunk), "stall" (sends half, then nothing),
        # "redirect" (302 to the file), "redirect-loop"
        self.mode: str | None = None
        self.mode_bytes: int | None = None  # bytes sent before a cut/stall (default: half)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path.removeprefix("/r"))
                mode = server.mode
                if mode in ("redirect", "redirect-loop") and not self.path.startswith("/r/"):
                    self.send_response(302)
                    self.send_header("Location", self.path if mode == "redirect-loop" else "/r" + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode in ("no-length", "lie", "chunked-cut", "stall") and data is not None:
                    sent = data[: len(data) // 2 if server.mode_bytes is None else server.mode_bytes]
                    self.send_response(200)
                    if mode == "lie":
                        self.send_header("Content-Length", str(len(data)))
                    if mode == "chunked-cut":
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(sent), sent))
                    else:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(sent)
                    self.wfile.flush()
                    if mode == "stall":
                        time.sleep(3)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_next is not None:
                    body, server.cut_next = body[: server.cut_next], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(d))
    return d


def _known(monkeypatch, url: str, sha256: str | None = SHA, size: int | None = len(PAYLOAD), name: str = "mobile_sam",
           file_name: str = "mobile_sam.pt") -> Weights:
    w = Weights(name, file_name, url, sha256, size, "test")
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, w)
    return w


def test_download_verifies_and_writes_the_file_whole(server, folder, monkeypatch, capsys):
    _known(monkeypatch, server.url + "/w.pt")
    assert main(["download", "mobile_sam", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"mobile_sam: downloaded to {folder / 'mobile_sam.pt'}, SHA-256 verified" in out
    assert "--checkpoint mobile_sam" in out
    assert (folder / "mobile_sam.pt").read_bytes() == PAYLOAD
    assert sorted(p.name for p in folder.iterdir()) == ["mobile_sam.pt"]  # no .part left
    assert main(["download", "mobile_sam", "--quiet"]) == 0  # already there: nothing fetched
    assert "already in" in capsys.readouterr().out and len(server.requests) == 1
    other = folder.parent / "elsewhere"
    assert main(["download", "MOBILE_SAM", "--dir", str(other), "--quiet"]) == 0  # any case
    assert (other / "mobile_sam.pt").read_bytes() == PAYLOAD
    assert f"set {weights.WEIGHTS_ENV}={other}" in capsys.readouterr().out


def test_interrupted_download_is_resumed_with_a_range_request(server, folder, monkeypatch, capsys):
    _known(monkeypatch, server.url + "/w.pt")
    server.cut_next = 200_000
    assert main(["download", "mobile_sam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the download of mobile_sam was interrupted after 200,000 of {len(PAYLOAD):,} bytes")
    assert "run the same command again to resume" in err and err.count("\n") == 1
    assert not (folder / "mobile_sam.pt").exists()  # never a partial file under the real name
    assert (folder / "mobile_sam.pt.part").stat().st_size == 200_000
    assert main(["download", "mobile_sam", "--quiet"]) == 0
    assert server.requests[-1] == ("/w.pt", "bytes=200000-")  # only the rest was asked for
    assert (folder / "mobile_sam.pt").read_bytes() == PAYLOAD and not (folder / "mobile_sam.pt.part").exists()


def test_resume_when_the_part_is_complete_or_the_server_ignores_ranges(server, folder, monkeypatch):
    _known(monkeypatch, server.url + "/w.pt")
    folder.mkdir()
    (folder / "mobile_sam.pt.part").write_bytes(PAYLOAD)  # killed after the last byte, before the rename
    assert weights.download("mobile_sam", progress=False).read_bytes() == PAYLOAD  # 416: nothing left to send
    (folder / "mobile_sam.pt").unlink()
    (folder / "mobile_sam.pt.part").write_bytes(b"junk" * 10)
    server.ignore_range = True  # 200 with the whole file: the .part starts over
    assert weights.download("mobile_sam", progress=False).read_bytes() == PAYLOAD


def test_hash_mismatch_deletes_the_download(server, folder, monkeypatch, capsys):
    _known(monkeypatch, server.url + "/w.pt", sha256="0" * 64)
    assert main(["download", "mobile_sam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"has SHA-256 {SHA[:12]}…, not the published 000000000000…" in err and err.count("\n") == 1
    assert list(folder.iterdir()) == []
    # a file already there under the official name but with other bytes is not trusted either
    (folder / "mobile_sam.pt").write_bytes(b"not it")
    with pytest.raises(InputError, match="is not the official mobile_sam file"):
        weights.download("mobile_sam", progress=False)


def test_http_error_and_no_network_are_one_clear_error(server, folder, monkeypatch, capsys):
    _known(monkeypatch, server.url + "/missing.pt")
    assert main(["download", "mobile_sam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"answered HTTP 404 Not Found" in err and "download" in err and err.count("\n") == 1
    assert not (folder / "mobile_sam.pt").exists()

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _known(monkeypatch, f"http://127.0.0.1:{port}/w.pt")
    assert main(["download", "mobile_sam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}" in err and "by hand" in err and err.count("\n") == 1
    assert not (folder / "mobile_sam.pt").exists()

    assert main(["download", "nope"]) == 2
    assert "no official weights are called 'nope'" in capsys.readouterr().err


def test_unknown_hash_is_reported_not_invented(server, folder, monkeypatch, capsys):
    _known(monkeypatch, server.url + "/ckpt.pth", sha256=None, size=None, name="tinysam", file_name="tinysam_42.3.pth")
    assert main(["download", "tinysam", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "SHA-256 verified" not in captured.out
    assert f"not verified; the downloaded file's SHA-256 is {hashlib.sha256(CKPT).hexdigest()}" in captured.err
    assert weights.KNOWN_WEIGHTS["sam_vit_b"].sha256 and len(weights.KNOWN_WEIGHTS["sam_vit_b"].sha256) == 64


def _tinysam(monkeypatch, server, path="/ckpt.pth"):
    return _known(monkeypatch, server.url + path, sha256=None, size=None, name="tinysam", file_name="tinysam_42.3.pth")


def test_unhashed_download_is_recorded_and_checked_later(server, folder, monkeypatch, capsys):
    """Weights without a published hash: the first complete download's size and SHA-256
    are recorded beside it; a later run checks the file against the record."""
    _tinysam(monkeypatch, server)
    assert main(["download", "tinysam", "--quiet"]) == 0
    record = json.loads((folder / "tinysam_42.3.pth.sha256.json").read_text())
    assert record["size"] == len(CKPT) and record["sha256"] == hashlib.sha256(CKPT).hexdigest()
    capsys.readouterr()
    assert main(["download", "tinysam", "--quiet"]) == 0
    assert "same size and SHA-256 as when it was downloaded" in capsys.readouterr().out
    assert len(server.requests) == 1
    damaged = bytearray(CKPT)
    damaged[100] ^= 1
    (folder / "tinysam_42.3.pth").write_bytes(bytes(damaged))
    assert main(["download", "tinysam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has changed since it was downloaded" in err and err.count("\n") == 1
    # a file from before records were kept is checked for what it is, then recorded
    (folder / "tinysam_42.3.pth.sha256.json").unlink()
    (folder / "tinysam_42.3.pth").write_bytes(b"")
    assert main(["download", "tinysam", "--quiet"]) == 2
    assert "is not a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["no-length", "lie", "chunked-cut", "stall"])
def test_unhashed_download_refuses_cut_transfers(server, folder, monkeypatch, capsys, mode):
    """A cut transfer of weights without a published hash never gets the official name:
    a body shorter than announced, a chunked stream without its end, a stall (bounded by
    the timeout), or a close-delimited body that stops early (not a whole zip)."""
    _tinysam(monkeypatch, server)
    server.mode = mode
    start = time.monotonic()
    assert main(["download", "tinysam", "--quiet", "--timeout", "0.5"]) == 2
    assert time.monotonic() - start < 2.5  # the stall is cut by the timeout, not the server
    err = capsys.readouterr().err
    assert err.startswith("error: the download of tinysam") and err.count("\n") == 1, err
    if mode == "stall":
        assert "no data for 0.5 s" in err
    assert not (folder / "tinysam_42.3.pth").exists() and not (folder / "tinysam_42.3.pth.sha256.json").exists()
    server.mode = None
    assert main(["download", "tinysam", "--quiet"]) == 0  # resumed or started over: whole in the end
    assert (folder / "tinysam_42.3.pth").read_bytes() == CKPT


@pytest.mark.parametrize("payload,why", [(b"", "is empty"), (b"<html>moved</html>", "is not a checkpoint"),
                                         (CKPT[: len(CKPT) // 2], "is not a checkpoint")])
def test_unhashed_download_refuses_what_is_no_checkpoint(server, folder, monkeypatch, capsys, payload, why):
    server.files["/odd.pth"] = payload
    _tinysam(monkeypatch, server, "/odd.pth")
    assert main(["download", "tinysam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert why in err and "(deleted)" in err and err.count("\n") == 1
    assert list(folder.iterdir()) == []


def test_download_follows_redirects_and_stops_loops(server, folder, monkeypatch, capsys):
    _tinysam(monkeypatch, server)
    server.mode = "redirect"
    assert main(["download", "tinysam", "--quiet"]) == 0
    assert (folder / "tinysam_42.3.pth").read_bytes() == CKPT
    assert [path for path, _ in server.requests] == ["/ckpt.pth", "/r/ckpt.pth"]
    (folder / "tinysam_42.3.pth").unlink()
    (folder / "tinysam_42.3.pth.sha256.json").unlink()
    capsys.readouterr()
    server.mode = "redirect-loop"
    assert main(["download", "tinysam", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 302" in err and err.count("\n") == 1
    assert not (folder / "tinysam_42.3.pth").exists()


def test_known_names_resolve_from_the_weights_folder_and_never_download(tmp_path, folder, monkeypatch, capsys):
    import torch

    from conftest import tiny_config
    from pocketsam import build_sam
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("something was downloaded"))
    with pytest.raises(CheckpointError, match=r"not downloaded .*run `pocketsam download mobile_sam` \(41 MB\)"):
        build_sam(checkpoint="mobile_sam")
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 24)).save(img)
    args = ["segment", str(img), "--point", "5,5", "--out", str(tmp_path / "o")]
    assert main([*args, "--checkpoint", "mobile_sam"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint 'mobile_sam' names the official mobile_sam weights") and err.count("\n") == 1

    torch.manual_seed(0)
    folder.mkdir()
    save_checkpoint(create_model(tiny_config()).eval(), folder / "mobile_sam.pt")
    assert build_sam(checkpoint="mobile_sam").image_encoder.img_size == 256
    from pocketsam.cli.common import resolve_checkpoint

    assert resolve_checkpoint("mobile_sam") == resolve_checkpoint("mobile_sam.pt") == folder / "mobile_sam.pt"
    # a path that exists is used as given; other unknown names are just missing files
    assert weights.resolve_checkpoint_name(img) == img
    with pytest.raises(CheckpointError, match="does not exist"):
        build_sam(checkpoint="sam_vit_q.pth")
    # tinysam's file name keeps TinySAM's decoder behaviour when resolved by name
    save_checkpoint(create_model(tiny_config()).eval(), folder / "tinysam_42.3.pth")
    assert build_sam(checkpoint="tinysam").mask_decoder.multimask_only


def test_download_list_says_what_is_known_and_downloaded(folder, capsys):
    folder.mkdir()
    (folder / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith("weights folder")}
    assert set(rows) == {"sam_vit_h", "sam_vit_l", "sam_vit_b", "mobile_sam", "tinysam"}
    assert "  downloaded" in rows["sam_vit_b"] and "not downloaded" in rows["mobile_sam"]
    assert "375 MB" in rows["sam_vit_b"] and "size unknown" in rows["tinysam"]
    assert f"weights folder: {folder}" in out
    assert main(["download"]) == 2
    assert "no weights named" in capsys.readouterr().err
