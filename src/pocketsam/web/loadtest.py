"""A bounded load test of ``pocketsam serve`` on loopback: N concurrent clients, each sending
a fixed number of requests that mix image uploads (some new, some already cached), embedding
downloads and server-side decodes of random clicks. It stops by itself (a fixed number of
requests, each with a timeout) and reports errors and latency percentiles.

Used by ``tests/test_serve_load.py`` and ``bench/serve_load.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np


@dataclass
class LoadResult:
    clients: int
    requests: int
    seconds: float
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def percentiles(self, kind: str | None = None) -> tuple[float, float]:
        """p50 and p95 in milliseconds (all requests, or one kind)."""
        values = [v for k, vs in self.latencies.items() if kind in (None, k) for v in vs]
        if not values:
            return float("nan"), float("nan")
        p50, p95 = np.percentile(np.asarray(values) * 1000, [50, 95])
        return float(p50), float(p95)

    def report(self) -> str:
        lines = [f"{self.clients} clients x {self.requests // max(1, self.clients)} requests = {self.requests} in "
                 f"{self.seconds:.1f} s ({self.requests / max(self.seconds, 1e-9):.0f} req/s), {len(self.errors)} errors"]
        for kind in [None, *sorted(self.latencies)]:
            p50, p95 = self.percentiles(kind)
            n = sum(len(v) for k, v in self.latencies.items() if kind in (None, k))
            lines.append(f"  {kind or 'all':<10} n={n:<4} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
        return "\n".join(lines)


def test_images(count: int = 6, seed: int = 0) -> list[bytes]:
    """Small distinct PNG/JPEG images (different sizes) to upload."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = int(rng.integers(200, 480)), int(rng.integers(200, 640))
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 40 * i % 256)], -1).astype(np.uint8)
        cy, cx, r = h // 2, w // 3, min(h, w) // 5
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG" if i % 2 else "JPEG")
        out.append(buf.getvalue())
    return out


def run_load(host: str, port: int, clients: int = 8, requests: int = 50, images: list[bytes] | None = None,
             seed: int = 0, timeout: float = 60.0) -> LoadResult:
    """``clients`` threads, ``requests`` requests each (about 1 in 8 an upload, 1 in 8 an
    embedding download, the rest decodes of random clicks on a random uploaded image)."""
    images = images or test_images()
    result = LoadResult(clients, clients * requests, 0.0)
    lock = threading.Lock()

    def record(kind: str, seconds: float | None, error: str | None = None) -> None:
        with lock:
            if error is not None:
                result.errors.append(f"{kind}: {error}")
            else:
                result.latencies.setdefault(kind, []).append(seconds)

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        known: list[dict[str, Any]] = []

        def call(kind: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
            nonlocal conn
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                record(kind, None, f"{type(exc).__name__}: {exc}")
                return None
            if response.status != 200:
                record(kind, None, f"HTTP {response.status}: {data[:200]!r}")
                return None
            record(kind, time.perf_counter() - start)
            return data

        try:
            for i in range(requests):
                r = rng.random()
                if not known or r < 0.125:
                    data = images[rng.randrange(len(images))]
                    body = call("upload", "POST", "/api/images?name=load.png", data,
                                {"Content-Type": "application/octet-stream"})
                    if body is not None:
                        info = json.loads(body)
                        if all(k["id"] != info["id"] for k in known):
                            known.append(info)
                elif r < 0.25:
                    info = rng.choice(known)
                    call("embedding", "GET", f"/api/images/{info['id']}/embedding", None, {})
                else:
                    info = rng.choice(known)
                    points = [[rng.randrange(info["width"]), rng.randrange(info["height"])]
                              for _ in range(rng.randint(1, 3))]
                    labels = [1] + [rng.randint(0, 1) for _ in points[1:]]
                    call("decode", "POST", f"/api/images/{info['id']}/decode",
                         json.dumps({"points": points, "labels": labels}).encode(),
                         {"Content-Type": "application/json"})
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout * requests)
    result.seconds = time.perf_counter() - start
    if any(t.is_alive() for t in threads):
        result.errors.append("a client did not finish in time")
    return result


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """Run ``app`` with uvicorn on ``host`` and a free port in a background thread; stop it on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", limit_concurrency=256)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield host, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
