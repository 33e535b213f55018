"""A seeded fuzz of ``pocketsam serve``'s HTTP API, over real sockets (uvicorn in a thread,
127.0.0.1 only), and the server's handling of clients that disconnect mid-upload.

Every case is one request (or a broken one): random JSON shapes and nesting, huge and
non-finite numbers, names in any script (lone surrogates included), invalid UTF-8,
truncated and oversized bodies, lying Content-Lengths and disconnects. The fuzz asserts:
no 5xx, no traceback or error-level log line from the server, a bounded time per case, and
a server that still answers afterwards.

``FUZZ_CASES`` sets the number of cases (default 150: a few seconds), ``FUZZ_SEED`` the
seed; a long run::

    FUZZ_CASES=5000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz_http.py
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote as _quote

import pytest
from PIL import Image

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "scene.jpg"
CASES = int(os.environ.get("FUZZ_CASES", "150"))
SEED = int(os.environ.get("FUZZ_SEED", "24"))
MAX_UPLOAD = 256 * 1024
CASE_SECONDS = 20.0  # an Everything on the loaded 2-core CI machine stays well below


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _StderrTap(io.TextIOBase):
    """sys.stderr while the server runs: what it writes is kept (and still shown)."""

    def __init__(self, real) -> None:
        self.real, self.text = real, []

    def write(self, s: str) -> int:
        self.text.append(s)
        return self.real.write(s)

    def flush(self) -> None:
        self.real.flush()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bundled model behind a real uvicorn server on a free loopback port; yields
    (port, log records, stderr tap)."""
    from pocketsam import build_sam
    from pocketsam.web.app import Engine, ServeSettings, create_app, loopback_hosts

    engine = Engine(build_sam(), ServeSettings(max_upload_bytes=MAX_UPLOAD, max_pixels=1_000_000, cache_images=64,
                                               decoder="server"), onnx_dir=tmp_path_factory.mktemp("fuzz_onnx"))
    engine.prepare(log=lambda m: None)
    app = create_app(engine, allowed_hosts=loopback_hosts())
    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "pocketsam.serve"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    tap = _StderrTap(sys.stderr)
    sys.stderr = tap
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="debug", access_log=False, timeout_keep_alive=2,
                                           limit_concurrency=64, lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield port, records, tap
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        sys.stderr = tap.real
        root.removeHandler(records)
        root.setLevel(old_level)
        engine.close()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = CASE_SECONDS) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def raw(port: int, data: bytes, wait: bool) -> bytes:
    """Send bytes as they are; with ``wait`` read the answer, else hang up at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_SECONDS) as s:
        s.sendall(data)
        if not wait:
            return b""
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def quote(s: str, safe: str = "/") -> str:
    """Percent-encoding of any string, lone surrogates included (as their UTF-8-like bytes)."""
    return _quote(s.encode("utf-8", "surrogatepass"), safe=safe)


def png(width: int, height: int, color=(30, 60, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- random values
SCRIPTS = [(0x20, 0x7E), (0xA0, 0x17F), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF),
           (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1F64F), (0x300, 0x36F), (0x200B, 0x202E)]


def text(rng: random.Random) -> str:
    """A string in any script: mixed scripts, combining marks, bidi controls, NUL, quotes,
    path separators, percent signs, and (rarely) a lone surrogate."""
    out = []
    for _ in range(rng.randint(0, 24)):
        r = rng.random()
        if r < 0.08:
            out.append(rng.choice(['"', "\\", "/", "..", "%", "\0", "\n", "\r\n", ";", "'"]))
        elif r < 0.1:
            out.append(chr(rng.randint(0xD800, 0xDFFF)))
        else:
            lo, hi = rng.choice(SCRIPTS)
            out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def number(rng: random.Random, scale: float = 600) -> object:
    r = rng.random()
    if r < 0.5:
        return rng.uniform(-0.1 * scale, 1.1 * scale)
    if r < 0.6:
        return rng.randint(-5, int(scale))
    if r < 0.7:
        return rng.choice([10 ** rng.randint(20, 400), -(10 ** rng.randint(20, 400))])  # huge integers
    if r < 0.8:
        return rng.choice([1e308, -1e308, 5e-324, -0.0, 2 ** 53 + 1, 2 ** 63, -(2 ** 63) - 1])
    if r < 0.9:
        return rng.choice([True, False, None, "1", "", [], {}])
    return rng.choice(["NaN", "Infinity", "-Infinity", "1e999"])  # spliced in as raw tokens


def value(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth > 5 or r < 0.35:
        return number(rng) if rng.random() < 0.6 else text(rng)
    if r < 0.7:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {text(rng) if rng.random() < 0.3 else rng.choice(["points", "labels", "box", "objects", "counts",
                                                           "name", "score"]): value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def dumps(rng: random.Random, obj: object) -> bytes:
    """JSON text; the raw-token strings become NaN / Infinity / 1e999 tokens, and strings
    with lone surrogates are escaped (as JSON allows) or written as raw (invalid) UTF-8."""
    s = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        s = s.replace(json.dumps(token), token)
    return s.encode("utf-8", "surrogatepass" if rng.random() < 0.5 else "backslashreplace")


def prompts_body(rng: random.Random, width: int, height: int) -> object:
    """A plausible decode request, half of them valid, the others with some fields broken."""
    if rng.random() < 0.5:
        n = rng.choice([0, 1, 1, 2, 5])
        body = {"points": [[rng.uniform(0, width - 1e-6), rng.uniform(0, height - 1e-6)] for _ in range(n)],
                "labels": [1] + [rng.choice([0, 1]) for _ in range(n - 1)] if n else [], "box": None}
        if n == 0 or rng.random() < 0.3:
            x0, y0 = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            body["box"] = [x0, y0, rng.uniform(x0 + 1e-3, width), rng.uniform(y0 + 1e-3, height)]
        return body
    n = rng.choice([0, 1, 1, 2, 3, 64, 65])
    points = [[number(rng, width), number(rng, height)] if rng.random() < 0.9 else value(rng) for _ in range(n)]
    labels = [rng.choice([0, 1, 1, 1, 2, -1, True, 0.5, "1"]) for _ in range(n + (rng.random() < 0.1))]
    body = {"points": points, "labels": labels}
    if rng.random() < 0.4:
        body["box"] = [number(rng, width), number(rng, height), number(rng, width), number(rng, height)]
    if rng.random() < 0.2:
        body[rng.choice(["points", "labels", "box"])] = value(rng)
    return body


def objects_body(rng: random.Random, width: int, height: int) -> object:
    objects = []
    for _ in range(rng.choice([0, 1, 2, 5])):
        total, counts = width * height, []
        if rng.random() < 0.7:  # valid run lengths
            left = total
            while left > 0:
                c = min(left, rng.randint(0, max(1, total // 3)))
                counts.append(c)
                left -= c
        else:
            counts = [number(rng, total) for _ in range(rng.randint(0, 6))]
        obj = {"counts": counts, "name": text(rng), "score": number(rng, 1)}
        objects.append(obj if rng.random() < 0.9 else value(rng))
    return {"objects": objects} if rng.random() < 0.9 else value(rng)


# --------------------------------------------------------------------------- the fuzz
def test_fuzz_http_api(served):
    port, records, tap = served
    rng = random.Random(SEED)
    status, body = request(port, "POST", "/api/images?name=scene.jpg", SCENE.read_bytes())
    assert status == 200, body
    images = [json.loads(body)]
    for (w, h), name in [((1, 1), "точка.png"), ((33, 7), "写真.png"), ((640, 2), "a\"b\\c.png")]:
        status, body = request(port, "POST", f"/api/images?name={quote(name)}", png(w, h))
        assert status == 200, body
        images.append(json.loads(body))
    tap.text.clear()
    records.records.clear()

    kinds = Counter()
    statuses = Counter()
    slowest = 0.0
    for i in range(CASES):
        image = rng.choice(images)
        api = f"/api/images/{image['id']}"
        w, h = image["width"], image["height"]
        kind = rng.choices(["decode", "decode-raw", "export", "upload", "path", "disconnect", "lying-length",
                            "everything", "progress"], [30, 15, 14, 10, 8, 8, 7, 1, 2])[0]
        kinds[kind] += 1
        start = time.monotonic()
        status = None
        if kind == "decode":
            status, body = request(port, "POST", api + "/decode", dumps(rng, prompts_body(rng, w, h)))
        elif kind == "decode-raw":
            data = rng.choice([
                b"[" * rng.randint(1, 200_000), b'{"points": ' * rng.randint(1, 50_000),
                dumps(rng, value(rng))[: rng.randint(0, 40)],  # truncated
                bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))),
                b'{"points": [[1' + b"0" * rng.randint(300, 6000) + b', 5]], "labels": [1]}',
                b'{"points": [[' + rng.choice([b"NaN", b"Infinity", b"-1e999", b"1e308"]) + b', 5]], "labels": [1]}',
                b" " * (MAX_UPLOAD + 1)])
            status, body = request(port, "POST", api + "/decode", data)
        elif kind == "export":
            fmt = rng.choice(["coco", "png", "coco", "png", text(rng)])
            status, body = request(port, "POST", f"{api}/export?format={quote(fmt, safe='')}",
                                   dumps(rng, objects_body(rng, w, h)))
        elif kind == "upload":
            data = rng.choice([png(rng.randint(1, 40), rng.randint(1, 40)), png(16, 16)[: rng.randint(0, 60)],
                               b"", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 500))),
                               b"\0" * (MAX_UPLOAD + 1)])
            name = quote(text(rng), safe="") if rng.random() < 0.8 else "".join(
                rng.choice("%zZ0/..") for _ in range(rng.randint(0, 12)))  # broken percent-escapes
            status, body = request(port, "POST", f"/api/images?name={name}", data)
        elif kind == "path":
            path = rng.choice([api + "/embedding", api + "/image.png", "/api/images/" + text(rng)[:70] + "/decode",
                               "/static/" + text(rng), "/api/" + text(rng), api + "/everything/progress"])
            status, body = request(port, rng.choice(["GET", "POST", "PUT", "DELETE"]),
                                   quote(path, safe="/%"))
        elif kind == "disconnect":  # announce a body, send part of it, hang up
            size = rng.randint(10, 100_000)
            target = rng.choice(["/api/images?name=x.png", api + "/decode", api + "/export?format=png"])
            raw(port, f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode()
                + b"[" * rng.randint(0, size - 1), wait=False)
        elif kind == "lying-length":
            length = rng.choice(["-1", "1e3", "²", "0x10", "99999999999999999999999", " 5", "5, 6", ""])
            answer = raw(port, f"POST {api}/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                               "Connection: close\r\n\r\n{}".encode("utf-8"), wait=True)
            if answer:  # h11 may refuse a malformed header itself, with a 400, or just close
                status = int(answer.split(b" ", 2)[1])
        elif kind == "everything":
            status, body = request(port, "POST", api + "/everything")
        else:
            status, body = request(port, "GET", api + "/everything/progress")
        seconds = time.monotonic() - start
        slowest = max(slowest, seconds)
        assert seconds < CASE_SECONDS, (i, kind, seconds)
        if status is not None:
            statuses[status] += 1
            assert status < 500, (i, kind, status, body[:300])
            if status >= 400 and kind not in ("lying-length",) and status != 404 and status != 405:
                message = json.loads(body)["error"]
                assert isinstance(message, str) and message and "\n" not in message, (i, kind, message)

    # still serving, and nothing in the logs but the expected debug lines
    status, body = request(port, "GET", "/api/config")
    assert status == 200
    time.sleep(0.2)  # disconnect handling finishes on the server's side
    printed = "".join(tap.text)
    assert "Traceback" not in printed and "internal error" not in printed, printed[-3000:]
    bad = [r for r in records.records if (r.levelno >= logging.WARNING or r.exc_info) and not uvicorn_refusal(r)]
    assert not bad, [(r.name, r.getMessage()) for r in bad[:5]]
    print(f"\nfuzz: {CASES} cases (seed {SEED}), {dict(kinds)}; statuses {dict(sorted(statuses.items()))}; "
          f"slowest case {slowest:.2f} s; 0 tracebacks, 0 5xx")


def uvicorn_refusal(record: logging.LogRecord) -> bool:
    """uvicorn's own one-line warning for a request its HTTP parser refuses (a malformed
    Content-Length, say), answered with a 400 before the app sees it: no traceback."""
    return record.name == "uvicorn.error" and record.getMessage() == "Invalid HTTP request received." \
        and not record.exc_info


def test_disconnect_mid_upload_is_one_debug_line(served):
    """A client that hangs up mid-upload (tab closed, upload cancelled) leaves one debug
    line per request and no traceback (was two "internal error" tracebacks each)."""
    port, records, tap = served
    tap.text.clear()
    records.records.clear()
    for _ in range(5):
        raw(port, b"POST /api/images?name=big.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000\r\n\r\n"
            + b"\xff\xd8" + b"\0" * 5000, wait=False)
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        lines = [r for r in records.records if r.name == "pocketsam.serve" and "disconnected" in r.getMessage()]
        if len(lines) == 5:
            break
        time.sleep(0.05)
    assert len(lines) == 5 and all(r.levelno == logging.DEBUG and not r.exc_info for r in lines)
    assert "Traceback" not in "".join(tap.text)
    assert not [r for r in records.records if r.levelno >= logging.WARNING or r.exc_info]
    status, _ = request(port, "GET", "/api/config")
    assert status == 200
