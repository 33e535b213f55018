"""`pocketsam serve`'s server: the API (Starlette's test client, no browser), its limits and
its errors. The real-browser test is tests/test_serve_browser.py; the load test
tests/test_serve_load.py."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2, a fork; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from pocketsam.cli import main  # noqa: E402
from pocketsam.masks import decode_rle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "scene.jpg"
CLICK = (190, 155)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from pocketsam import build_sam
    from pocketsam.web.app import Engine, ServeSettings

    engine = Engine(build_sam(), ServeSettings(max_upload_bytes=1 << 20, max_pixels=2_000_000, cache_images=3),
                    onnx_dir=tmp_path_factory.mktemp("serve_onnx"))
    engine.prepare(log=lambda m: None)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine):
    from pocketsam.web.app import create_app, loopback_hosts

    hosts = loopback_hosts() + ["testserver"]
    with TestClient(create_app(engine, allowed_hosts=hosts), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def scene_id(client):
    """The example scene's id (uploaded again: cheap when its embedding is still cached)."""
    r = client.post("/api/images?name=scene.jpg", content=SCENE.read_bytes())
    assert r.status_code == 200, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def segment_mask(tmp_path_factory):
    """`pocketsam segment`'s best mask for the click (SAM's one-click rule: best of 3)."""
    out = tmp_path_factory.mktemp("segment")
    assert main(["segment", str(SCENE), "--point", f"{CLICK[0]},{CLICK[1]}", "--multimask", "--out", str(out)]) == 0
    return np.array(Image.open(out / "mask_0.png")) > 0


def png_bytes(shape, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, shape).save(buf, format="PNG")
    return buf.getvalue()


def test_page_config_and_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "pocketsam" in r.text and "/static/app.js" in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-opener-policy"] == "same-origin"
    assert client.get("/static/app.js").status_code == 200
    config = client.get("/api/config").json()
    assert config["input_size"] == 256 and config["embedding_shape"] == [1, 256, 16, 16]
    assert config["low_res_mask_size"] == [64, 64] and config["everything_mode"] == "boxes"  # the bundled head
    assert config["max_upload_bytes"] == 1 << 20 and config["max_pixels"] == 2_000_000
    from pocketsam.web import browser_decoder_assets

    assert config["browser_decoder"] == browser_decoder_assets()
    if not config["browser_decoder"]:
        assert "make web" in config["browser_decoder_unavailable"]


def test_upload_embedding_decode(client, engine, scene_id, segment_mask):
    """The embedding is computed once (cached by content hash); server-side decoding of a
    click gives `pocketsam segment`'s mask; the served decoder.onnx gives it too."""
    r = client.post("/api/images?name=again.jpg", content=SCENE.read_bytes())
    assert r.json()["cached"] is True and r.json()["id"] == scene_id
    assert (r.json()["width"], r.json()["height"]) == (512, 384)

    r = client.get(f"/api/images/{scene_id}/embedding")
    assert r.headers["x-embedding-shape"] == "1,256,16,16"
    embedding = np.frombuffer(r.content, np.float32).reshape(1, 256, 16, 16)
    from pocketsam import SamPredictor
    from pocketsam.io import load_image

    predictor = SamPredictor(engine.sam)
    predictor.set_image(load_image(SCENE))
    np.testing.assert_allclose(embedding, predictor.get_image_embedding().numpy(), rtol=0, atol=1e-5)

    r = client.post(f"/api/images/{scene_id}/decode", json={"points": [list(CLICK)], "labels": [1], "box": None})
    assert r.status_code == 200, r.text
    mask = decode_rle(r.json()["segmentation"])
    assert mask.shape == (384, 512) and r.json()["area"] == int(mask.sum()) > 0
    assert (mask != segment_mask).sum() == 0

    # the served decoder.onnx (what the browser runs) gives the server's masks, for every kind of prompt
    ort = pytest.importorskip("onnxruntime")
    r = client.get("/api/decoder.onnx")
    assert r.status_code == 200
    session = ort.InferenceSession(r.content)
    prompt_sets = [
        {"points": [list(CLICK)], "labels": [1], "box": None},
        {"points": [[200, 160], [10, 10]], "labels": [1, 0], "box": None},
        {"points": [], "labels": [], "box": [140, 120, 230, 220]},
        {"points": [[200, 160]], "labels": [1], "box": [140, 120, 230, 220]},
        {"points": [[100, 300], [420, 200], [300, 330]], "labels": [1, 1, 0], "box": None},
    ]
    for prompts in prompt_sets:
        r = client.post(f"/api/images/{scene_id}/decode", json=prompts)
        assert r.status_code == 200, r.text
        server_mask = decode_rle(r.json()["segmentation"])
        coords, labels = list(prompts["points"]), list(prompts["labels"])
        if prompts["box"]:
            coords += [prompts["box"][:2], prompts["box"][2:]]
            labels += [2, 3]
        else:
            coords.append([0, 0])
            labels.append(-1)
        coords = predictor.transform.apply_coords(np.asarray(coords, float), (384, 512))
        masks, scores, _ = session.run(None, {
            "image_embeddings": embedding, "point_coords": coords[None].astype(np.float32),
            "point_labels": np.float32([labels]), "mask_input": np.zeros((1, 1, 64, 64), np.float32),
            "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.float32([384, 512])})
        assert ((masks[0, 0] > 0) != server_mask).sum() <= 0.001 * server_mask.size, prompts
        assert abs(float(scores[0, 0]) - r.json()["score"]) <= 1e-3, prompts
        if prompts is prompt_sets[0]:
            assert (server_mask != segment_mask).sum() == 0


def test_bad_uploads_keep_the_server_serving(client, scene_id):
    cases = [
        (b"this is not an image", 400, "'notes.txt' is not an image"),
        (b"", 400, "empty"),
        (png_bytes((2000, 1500)), 400, "decompression bombs"),  # 3 MP > max_pixels 2 MP (a small PNG)
        (b"\xff\xd8\xff\xe0" + b"\0" * 100, 400, "notes.txt"),  # a truncated JPEG
    ]
    for data, status, message in cases:
        r = client.post("/api/images?name=notes.txt", content=data)
        assert r.status_code == status and message in r.json()["error"], (r.status_code, r.text)
        assert "/tmp" not in r.json()["error"] and "pocketsam-serve" not in r.json()["error"]
    # over the size cap: refused from Content-Length, and while streaming without one
    r = client.post("/api/images", content=b"\0" * ((1 << 20) + 1))
    assert r.status_code == 413 and "limit of 1 MiB" in r.json()["error"]

    def chunks():
        for _ in range(40):
            yield b"\0" * 65536

    r = client.post("/api/images", content=chunks())
    assert r.status_code == 413
    # still serving
    r = client.post(f"/api/images/{scene_id}/decode", json={"points": [list(CLICK)], "labels": [1]})
    assert r.status_code == 200


def test_bad_prompts(client, scene_id):
    url = f"/api/images/{scene_id}/decode"
    bad = [
        ({"points": [[600, 10]], "labels": [1]}, "outside"),
        ({"points": [[10, 10]], "labels": [2]}, "labels must be"),
        ({"points": [[10, 10]], "labels": [0]}, "foreground point"),
        ({"points": [[10, float("nan")]], "labels": [1]}, "finite numbers"),
        ({"points": [[10, 10]], "labels": [1], "box": [50, 50, 40, 60]}, "empty or inverted"),
        ({"points": [], "labels": [], "box": [50, 50, 600, 60]}, "goes outside the image"),  # the CLI's rule
        ({"points": [[10 ** 400, 10]], "labels": [1]}, "finite numbers"),  # was a 500 OverflowError
        ({"points": [[10, 10]], "labels": [1], "box": [0, 0, 10 ** 400, 5]}, "finite numbers"),
        ({"points": [[True, 10]], "labels": [1]}, "finite numbers"),
        ({"points": [[1, 1]] * 65, "labels": [1] * 65}, "at most 64"),
        ([1, 2], "JSON object"),
    ]
    for body, message in bad:
        r = client.post(url, content=json.dumps(body).encode())
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    assert client.post(url, content=b"{nope").status_code == 400
    # JSON that Python's parser alone turns into a 500: infinities, 400 digits, deep nesting
    for raw, message in [(b'{"points": [[1e999, 10]], "labels": [1]}', "finite numbers"),
                         (b'{"points": [[Infinity, 10]], "labels": [1]}', "finite numbers"),
                         (b'{"points": [[1' + b"0" * 5000 + b', 10]], "labels": [1]}', "digits"),
                         (b"[" * 100_000, "100000 levels deep"), (b'{"a": ' * 50_000, "levels deep"),
                         (b'{"a": "\xff"}', "not UTF-8")]:
        r = client.post(url, content=raw)
        assert r.status_code == 400 and message in r.json()["error"], (raw[:40], r.text)


def test_no_path_traversal(client, scene_id, tmp_path):
    for path in ["/static/../pyproject.toml", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                 "/static/%2e%2e/%2e%2e/%2e%2e/pyproject.toml", "/static//etc/passwd",
                 "/api/images/..%2f..%2fpyproject.toml/embedding", f"/api/images/{'0' * 64}/embedding",
                 f"/api/images/{scene_id.upper()}/embedding", "/api/images/../static/app.js/embedding"]:
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert b"[project]" not in r.content and b"root:" not in r.content
    r = client.post("/api/images?name=../../../../tmp/evil.png", content=png_bytes((8, 8)))
    assert r.status_code == 200 and r.json()["name"] == "evil.png"
    assert not (Path("/tmp") / "evil.png").exists() or (Path("/tmp") / "evil.png").stat().st_size != len(png_bytes((8, 8)))


def test_host_header_checked_on_loopback(client):
    r = client.get("/api/config", headers={"Host": "attacker.example"})
    assert r.status_code == 400


def test_cache_is_bounded(client, engine):
    ids = [client.post("/api/images", content=png_bytes((16 + i, 16))).json()["id"] for i in range(4)]
    assert len(engine.cache) == 3
    r = client.get(f"/api/images/{ids[0]}/embedding")
    assert r.status_code == 404 and "open it again" in r.json()["error"]


def test_exports(client, scene_id, segment_mask):
    from pocketsam.masks import mask_to_rle_uncompressed

    import torch

    counts = mask_to_rle_uncompressed(torch.from_numpy(segment_mask)[None])[0]["counts"]
    body = {"objects": [{"counts": counts, "score": 0.5, "name": "dog"}, {"counts": [384 * 512]}]}
    r = client.post(f"/api/images/{scene_id}/export?format=coco", json=body)
    assert r.status_code == 200 and 'filename="scene_coco.json"' in r.headers["content-disposition"]
    doc = r.json()
    assert doc["images"][0]["width"] == 512 and doc["images"][0]["height"] == 384
    a, b = doc["annotations"]
    assert (decode_rle(a["segmentation"]) == segment_mask).all() and a["area"] == int(segment_mask.sum())
    assert a["score"] == 0.5 and a["name"] == "dog" and a["category_id"] == 1 and a["iscrowd"] == 0
    assert b["area"] == 0 and b["bbox"] == [0, 0, 0, 0]

    r = client.post(f"/api/images/{scene_id}/export?format=png", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == ["mask_0.png", "mask_1.png"]
        assert ((np.array(Image.open(zf.open("mask_0.png"))) > 0) == segment_mask).all()

    for bad, message in [({"objects": [{"counts": [5]}]}, "sum to 5"), ({"objects": [{"counts": [-1, 3]}]}, "non-negative"),
                         ({"nope": 1}, "objects"), ({"objects": [{"counts": "abc"}]}, "run lengths")]:
        r = client.post(f"/api/images/{scene_id}/export?format=coco", json=bad)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert client.post(f"/api/images/{scene_id}/export?format=exe", json=body).status_code == 400


def test_everything(client, scene_id):
    r = client.post(f"/api/images/{scene_id}/everything")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["mode"] == "boxes" and len(result["masks"]) > 0  # the bundled model's proposal head
    areas = [m["area"] for m in result["masks"]]
    assert areas == sorted(areas, reverse=True)
    assert all(decode_rle(m["segmentation"]).sum() == m["area"] for m in result["masks"][:5])


def test_everything_without_a_proposal_head_is_hierarchical(engine, monkeypatch):
    from pocketsam.web.app import create_app

    # not monkeypatch.setattr: its undo deletes an nn.Module's submodule instead of restoring it
    head, engine.sam.proposal_head = engine.sam.proposal_head, None
    try:
        with TestClient(create_app(engine)) as c:
            assert c.get("/api/config").json()["everything_mode"] == "hierarchical"
            image_id = c.post("/api/images", content=SCENE.read_bytes()).json()["id"]
            r = c.post(f"/api/images/{image_id}/everything")
            assert r.status_code == 200 and r.json()["mode"] == "hierarchical"
    finally:
        engine.sam.proposal_head = head


def test_cli_refuses_bad_settings(capsys):
    from pocketsam.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err.startswith("error: --port must be")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
    assert main(["serve", "--checkpoint", "/nonexistent.pt"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_one_click_rule_everywhere(client, scene_id, tmp_path):
    """pocketsam.prompts' rule gives the same mask in `pocketsam segment`, the server's
    decode endpoint and the exported ONNX decoder (what the browser runs): one click → the
    best of the three multimask outputs, several points or a box → the single-mask output."""
    ort = pytest.importorskip("onnxruntime")
    from pocketsam import SamPredictor, build_sam
    from pocketsam.export.onnx_sam import export_decoder
    from pocketsam.io import load_image

    sam = build_sam()
    predictor = SamPredictor(sam)
    image = load_image(SCENE)
    predictor.set_image(image)
    embedding = predictor.get_image_embedding().numpy()
    multi, multi_scores, _ = predictor.predict(np.float64([CLICK]), np.int64([1]), multimask_output=True)
    single, _, _ = predictor.predict(np.float64([CLICK]), np.int64([1]), multimask_output=False)
    best = multi[int(np.argmax(multi_scores))]
    assert (best != single).sum() > 0  # else this image could not tell the two outputs apart
    session = ort.InferenceSession(str(export_decoder(sam, tmp_path / "decoder.onnx")))

    cases = [({"points": [list(CLICK)], "labels": [1], "box": None}, ["--point", "%d,%d" % CLICK], True),
             ({"points": [], "labels": [], "box": [140, 120, 230, 220]}, ["--box", "140,120,230,220"], False),
             ({"points": [[200, 160], [10, 10]], "labels": [1, 0], "box": None},
              ["--point", "200,160", "--point", "10,10,0"], False)]
    for prompts, flags, from_multimask in cases:
        out = tmp_path / f"cli{len(flags)}{prompts['box'] is None}"
        assert main(["segment", str(SCENE), *flags, "--out", str(out)]) == 0
        cli = np.array(Image.open(out / "mask_0.png")) > 0
        assert not (out / "mask_1.png").exists()  # one mask by default
        r = client.post(f"/api/images/{scene_id}/decode", json=prompts)
        assert r.status_code == 200, r.text
        web = decode_rle(r.json()["segmentation"])
        coords, labels = list(prompts["points"]), list(prompts["labels"])
        if prompts["box"]:
            coords, labels = coords + [prompts["box"][:2], prompts["box"][2:]], labels + [2, 3]
        else:
            coords, labels = coords + [[0, 0]], labels + [-1]
        coords = predictor.transform.apply_coords(np.asarray(coords, float), image.shape[:2])
        onnx_masks, onnx_scores, _ = session.run(None, {
            "image_embeddings": embedding, "point_coords": coords[None].astype(np.float32),
            "point_labels": np.float32([labels]), "mask_input": np.zeros((1, 1, 64, 64), np.float32),
            "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.float32(image.shape[:2])})
        onnx = onnx_masks[0, 0] > 0
        # the library: predict_prompt is the rule, on the drop-in predict
        from pocketsam.prompts import predict_prompt

        point_args = (np.float64(prompts["points"]), np.int64(prompts["labels"])) if prompts["points"] else (None, None)
        lib, lib_scores, _ = predict_prompt(predictor, *point_args,
                                            box=np.float64(prompts["box"]) if prompts["box"] else None)
        ref_multi, ref_scores, _ = predictor.predict(*point_args, box=np.float64(prompts["box"]) if prompts["box"]
                                                     else None, multimask_output=from_multimask)
        expected = ref_multi[int(np.argmax(ref_scores))]
        assert lib.shape[0] == 1 and (lib[0] == expected).all(), prompts
        assert (web == expected).all(), prompts
        # ONNX Runtime upsamples in float32 through a 256² map: a few edge pixels may differ
        assert (onnx != expected).sum() <= 0.001 * expected.size, prompts
        assert abs(float(onnx_scores[0, 0]) - float(lib_scores[0])) <= 1e-3, prompts
        assert (cli == expected).all(), ("pocketsam segment", prompts)


@pytest.mark.parametrize("name", ["снимок экрана.jpg", "写真 2024.png", 'a"b\\c%.jpg'])
def test_downloads_of_images_with_any_name(client, name):
    """Content-Disposition of COCO / PNG downloads for names outside Latin-1 (were a 500
    UnicodeEncodeError): RFC 6266's filename*=UTF-8'' with an ASCII fallback."""
    from urllib.parse import quote

    from pocketsam.web.app import safe_name

    r = client.post(f"/api/images?name={quote(name)}", content=png_bytes((20, 10 + len(name))))  # bytes of its own
    assert r.status_code == 200 and r.json()["name"] == safe_name(name)
    image_id = r.json()["id"]
    body = {"objects": [{"counts": [20 * (10 + len(name))], "name": "объект"}]}
    stem = Path(safe_name(name)).stem
    for fmt, suffix in [("coco", "_coco.json"), ("png", "_masks.zip")]:
        r = client.post(f"/api/images/{image_id}/export?format={fmt}", json=body)
        assert r.status_code == 200, r.text
        header = r.headers["content-disposition"]
        header.encode("latin-1")  # a valid HTTP header value
        assert header.startswith('attachment; filename="') and f"filename*=UTF-8''{quote(stem + suffix, safe='')}" in header
        fallback = header.split('filename="')[1].split('"')[0]
        assert fallback.isascii() and fallback.endswith(suffix) and '"' not in fallback and "\\" not in fallback
    assert client.post(f"/api/images/{image_id}/export?format=coco", json=body).json()["annotations"][0]["name"] == "объект"


def test_work_per_request_is_bounded(client, engine, scene_id):
    """PNG export and Everything build full-size masks: pixels × masks over the server's
    limit is refused up front with the numbers (a 4xx); COCO export works on the runs."""
    limit = engine.settings.max_work_pixels
    engine.settings.max_work_pixels = 512 * 384 * 3  # three masks of the scene
    try:
        body = {"objects": [{"counts": [512 * 384]}] * 4}
        r = client.post(f"/api/images/{scene_id}/export?format=png", json=body)
        assert r.status_code == 422
        message = r.json()["error"]
        assert "4 mask(s) of this 512x384 image: 1 megapixels" in message and "limit of 1 per request" in message
        assert "COCO" in message
        assert client.post(f"/api/images/{scene_id}/export?format=coco", json=body).status_code == 200
        body["objects"] = body["objects"][:3]
        assert client.post(f"/api/images/{scene_id}/export?format=png", json=body).status_code == 200
        r = client.post(f"/api/images/{scene_id}/everything")
        assert r.status_code == 422 and f"up to {engine.settings.max_everything_masks} mask(s)" in r.json()["error"]
    finally:
        engine.settings.max_work_pixels = limit


def test_everything_reports_its_progress(client, engine, scene_id):
    """While Everything runs, its progress endpoint counts the prompts decoded; afterwards
    it says the run is finished with every announced prompt decoded."""
    import threading
    import time

    assert client.get(f"/api/images/{'0' * 64}/everything/progress").status_code == 404
    seen = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            seen.append(engine.progress_of(scene_id))
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        r = client.post(f"/api/images/{scene_id}/everything")
    finally:
        done.set()
        poller.join()
    assert r.status_code == 200
    final = client.get(f"/api/images/{scene_id}/everything/progress").json()
    assert final["running"] is False and final["fraction"] == 1.0 and final["done"] == final["total"] > 0
    running = [p for p in seen if p["running"]]
    assert running, "the run was never seen in progress"
    assert all(0 <= p["done"] <= p["total"] and 0.0 <= p["fraction"] <= 1.0 for p in running)
    assert [p["done"] for p in running] == sorted(p["done"] for p in running)  # it only goes forward


def test_model_note_is_served(engine):
    from pocketsam.web.app import create_app

    note = engine.settings.model_note
    engine.settings.model_note = "the bundled model was trained on synthetic scenes"
    try:
        with TestClient(create_app(engine)) as c:
            assert c.get("/api/config").json()["model_note"] == "the bundled model was trained on synthetic scenes"
        assert 'id="model-note"' in (REPO / "src/pocketsam/web/static/index.html").read_text()
    finally:
        engine.settings.model_note = note


def test_serve_says_what_the_bundled_model_is(monkeypatch, capsys):
    """serve prints the bundled model's note (only for the bundled model) and puts it in the
    page's config; a limit of inf is one error line (was an OverflowError)."""
    import uvicorn

    from pocketsam.weights import BUNDLED_NOTE

    captured = {}

    def run(self, sockets=None):
        captured["note"] = self.config.app.state.engine.settings.model_note

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["serve", "--port", "0", "--decoder", "server"]) == 0
    out, err = capsys.readouterr()
    assert f"note: {BUNDLED_NOTE}" in err and "pocketsam download mobile_sam" in BUNDLED_NOTE
    assert "--checkpoint mobile_sam" in BUNDLED_NOTE and captured["note"] == BUNDLED_NOTE

    for flag in ["--max-upload-mb", "--max-work-mpix"]:
        for value in ["inf", "nan", "-1", "1e300"]:
            assert main(["serve", flag, value]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {flag} must be") and err.count("\n") == 1, (flag, value, err)


def test_sigterm_removes_the_temp_folder(tmp_path):
    """`pocketsam serve` stopped with SIGTERM (a service manager, `kill`) shuts down and
    removes its temp folder, as Ctrl-C does (issue 24 item 6)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path), "POCKETSAM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pocketsam", "serve", "--port", "0", "--decoder", "server"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("pocketsam serve: http://") or time.monotonic() > deadline:
                break
        assert list(tmp_path.glob("pocketsam-serve-*")), "serve made no temp folder"
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert "Traceback" not in out
    assert not list(tmp_path.glob("pocketsam-serve-*"))
