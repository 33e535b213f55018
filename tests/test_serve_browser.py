"""`pocketsam serve` in a real browser: Debian's Chromium driven by Playwright.

The page loads an image, a click shows a mask that must equal `pocketsam segment`'s for the
same click, and the COCO JSON download must hold that mask. Run once with the decoder in
the browser (onnxruntime-web, installed by `make web` from the npm registry) and once with
server-side decoding. `make test` installs Chromium (apt-get), Playwright (pip) and
onnxruntime-web (npm); whatever is missing makes these tests skip with the reason.

Set POCKETSAM_SCREENSHOT=docs/serve.png to save the README's screenshot.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsam.cli import main
from pocketsam.masks import decode_rle, rle_to_mask

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install '.[serve]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (`make test` installs Debian's chromium with apt-get when run as root)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "scene.jpg"
CLICK = (190, 155)
BOX = (290, 90, 322, 186)  # x0, y0, x1, y1 of the drag, in image pixels

# The mask shown for the current object, read back from the canvas the page draws it on
# (alpha > 0 where the mask is), as uncompressed COCO RLE counts (column-major, zeros first).
SHOWN_COUNTS = """() => {
  const c = document.getElementById('current-layer');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const counts = []; let cur = 0, run = 0;
  for (let x = 0; x < c.width; x++) for (let y = 0; y < c.height; y++) {
    const v = d[4 * (y * c.width + x) + 3] > 0 ? 1 : 0;
    if (v !== cur) { counts.push(run); run = 0; cur = v; }
    run++;
  }
  counts.push(run);
  return {counts, width: c.width, height: c.height};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`pocketsam serve --port 0` (bundled model) in its own process; stopped at the end."""
    env = {**os.environ, "POCKETSAM_CACHE": str(tmp_path_factory.mktemp("cache")), "POCKETSAM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pocketsam", "serve", "--port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    url, seen, deadline = None, [], time.monotonic() + 120
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("pocketsam serve: http://"):
            url = line.split()[2]
    if url is None:
        proc.kill()
        pytest.fail("pocketsam serve did not start:\n" + "".join(seen))
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def segment_mask(tmp_path_factory):
    """`pocketsam segment`'s mask for a prompt (``--point X,Y`` or ``--box X0,Y0,X1,Y1``) on the
    scene, by default: pocketsam's one click rule (pocketsam.prompts) gives the best of the 3
    multimask outputs for one click and the single-mask output for a box, in the CLI as in
    the page."""
    cache = {}

    def run(option: str, values) -> np.ndarray:
        key = (option, tuple(values))
        if key not in cache:
            folder = tmp_path_factory.mktemp("segment")
            args = ["segment", str(SCENE), option, ",".join(map(str, values)), "--out", str(folder)]
            assert main(args) == 0
            cache[key] = np.array(Image.open(folder / "mask_0.png")) > 0
        return cache[key]

    return run


def _page_point(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#image-layer").bounding_box()
    image = page.evaluate("pocketsam.image()")
    return box["x"] + (x + 0.5) * box["width"] / image["width"], box["y"] + (y + 0.5) * box["height"] / image["height"]


def _shown_mask(page) -> np.ndarray:
    shown = page.evaluate(SHOWN_COUNTS)
    return rle_to_mask({"size": [shown["height"], shown["width"]], "counts": shown["counts"]})


def _wait_idle(page, extra: str = "true") -> None:
    page.wait_for_function(f"pocketsam.idle() && ({extra})", timeout=60_000)


@pytest.mark.parametrize("decoder", ["browser", "server"])
def test_click_box_download(server, browser, segment_mask, decoder, tmp_path):
    from pocketsam.web import browser_decoder_assets

    if decoder == "browser" and not browser_decoder_assets():
        pytest.skip("onnxruntime-web is not installed (`make web` copies it from the npm registry; "
                    "without npm the page decodes on the server, tested by the 'server' case)")
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server + ("?decoder=server" if decoder == "server" else ""))
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        assert page.evaluate("pocketsam.mode()") == decoder
        # the bundled model says what it is, and how to get a real one
        note = page.inner_text("#model-note")
        assert page.is_visible("#model-note") and "synthetic scenes" in note and "pocketsam download mobile_sam" in note

        # a bad upload: an error in the page, and the page keeps working
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"not an image at all")
        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#error:not([hidden])", timeout=60_000)
        assert "broken.png" in page.inner_text("#error") and "not an image" in page.inner_text("#error")

        page.set_input_files("#file", str(SCENE))
        page.wait_for_function("document.body.dataset.state === 'ready' && pocketsam.image() !== null", timeout=60_000)
        _wait_idle(page)
        assert page.evaluate("pocketsam.image()")["width"] == 512

        # one click: the mask shown is `pocketsam segment`'s
        page.mouse.click(*_page_point(page, *CLICK))
        _wait_idle(page, "pocketsam.prompts().points.length === 1 && pocketsam.currentCounts() !== null")
        prompts = page.evaluate("pocketsam.prompts()")
        assert prompts["labels"] == [1] and prompts["box"] is None
        point = prompts["points"][0]  # the pixel clicked (the page's mapping of the cursor)
        assert abs(point[0] - CLICK[0]) <= 1 and abs(point[1] - CLICK[1]) <= 1
        shown = _shown_mask(page)
        ref = segment_mask("--point", point)
        assert shown.shape == ref.shape and shown.sum() > 0
        differ = int((shown != ref).sum())
        assert differ <= 0.001 * ref.size, f"{differ} pixels differ from pocketsam segment's mask"

        # the COCO JSON download holds that mask
        with page.expect_download() as info:
            page.click("#download-coco")
        doc = json.loads(Path(info.value.path()).read_text())
        assert doc["images"][0]["file_name"] == "scene.jpg" and doc["images"][0]["width"] == 512
        assert len(doc["annotations"]) == 1
        ann = doc["annotations"][0]
        assert (decode_rle(ann["segmentation"]) == shown).all() and ann["area"] == int(shown.sum())
        assert ann["bbox"][2] > 0 and ann["category_id"] == doc["categories"][0]["id"]

        # add it to the list; undo; redo by adding again
        page.click("#add")
        assert len(page.evaluate("pocketsam.objects()")) == 1 and page.evaluate("pocketsam.currentCounts()") is None
        page.click("#undo")
        assert len(page.evaluate("pocketsam.objects()")) == 0 and page.evaluate("pocketsam.currentCounts()") is not None
        page.click("#add")

        # a right click adds a background point to a new object: nothing to segment yet
        page.mouse.click(*_page_point(page, 400, 60), button="right")
        _wait_idle(page, "pocketsam.prompts().points.length === 1")
        assert page.evaluate("pocketsam.prompts()")["labels"] == [0]
        page.keyboard.press("Escape")

        # a drag draws a box
        x0, y0 = _page_point(page, BOX[0], BOX[1])
        x1, y1 = _page_point(page, BOX[2] - 1, BOX[3] - 1)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
        page.mouse.move(x1, y1, steps=3)
        page.mouse.up()
        _wait_idle(page, "pocketsam.prompts().box !== null && pocketsam.currentCounts() !== null")
        box = page.evaluate("pocketsam.prompts()")["box"]
        assert all(abs(a - b) <= 1 for a, b in zip(box, BOX)), box
        shown = _shown_mask(page)
        assert (shown != segment_mask("--box", box)).sum() <= 0.001 * shown.size
        page.click("#add")
        assert [o["name"] for o in page.evaluate("pocketsam.objects()")] == ["object 1", "object 2"]

        with page.expect_download() as info:
            page.click("#download-png")
        assert info.value.suggested_filename == "scene_masks.zip"

        if decoder == "browser" and os.environ.get("POCKETSAM_SCREENSHOT"):
            page.mouse.click(*_page_point(page, 398, 216))
            _wait_idle(page, "pocketsam.currentCounts() !== null")
            page.mouse.move(*_page_point(page, 240, 290))
            page.wait_for_timeout(1000)
            page.screenshot(path=os.environ["POCKETSAM_SCREENSHOT"])

        if decoder == "server":  # Everything (on the server either way): its masks join the list, one undo step
            page.click("#everything")
            _wait_idle(page, "pocketsam.objects().length > 2")
            progress = page.evaluate(f"fetch('/api/images/{page.evaluate('pocketsam.image()')['id']}/everything/progress')"
                                     ".then(r => r.json())")
            assert progress["running"] is False and progress["done"] == progress["total"] > 0
            page.click("#undo")
            assert len(page.evaluate("pocketsam.objects()")) == 2

        page.click("#clear")
        assert page.evaluate("pocketsam.objects()") == [] and page.evaluate("pocketsam.currentCounts()") is None
        assert errors == []
    finally:
        page.close()
