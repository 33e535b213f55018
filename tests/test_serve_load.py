"""A bounded load test of `pocketsam serve` on loopback: 8 concurrent clients x 50 requests
each, mixing image uploads, embedding downloads and clicks decoded on the server; zero
errors allowed. Prints p50/p95 (run with -s to see them). Stops by itself."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@pytest.mark.slow
def test_load(tmp_path):
    from pocketsam import build_sam
    from pocketsam.web.app import Engine, ServeSettings, create_app, loopback_hosts
    from pocketsam.web.loadtest import run_load, serve_in_thread

    engine = Engine(build_sam(), ServeSettings(cache_images=8, decoder="server"), onnx_dir=tmp_path)
    engine.prepare(log=lambda m: None)
    try:
        with serve_in_thread(create_app(engine, allowed_hosts=loopback_hosts())) as (host, port):
            result = run_load(host, port, clients=8, requests=50)
    finally:
        engine.close()
    print("\n" + result.report())
    assert result.errors == []
    assert sum(len(v) for v in result.latencies.values()) == 400
    assert {"upload", "decode", "embedding"} <= set(result.latencies)
