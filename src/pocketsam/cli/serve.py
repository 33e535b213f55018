"""``pocketsam serve``: a click-to-segment web app on this machine.

Example::

    pocketsam serve --checkpoint mobile_sam.pt          # then open http://127.0.0.1:8000/

Open or drop an image; the server computes its embedding once (cached by content hash) and
the page decodes masks in the browser (onnxruntime-web, installed by ``make web``) or, when
those assets are absent, on the server. Left click: foreground point; right click (or
Shift/Ctrl/Alt + click): background point; drag: box. See :mod:`pocketsam.web.app`.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from typing import Any

from pocketsam.errors import InputError


#: Upper bounds of the limits (an upload of 64 GiB, 10^8 megapixels of masks): finite, so
#: that "inf" is refused and byte counts stay plain integers.
MAX_UPLOAD_MB = 65536.0
MAX_WORK_MPIX = 1e8


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="click-to-segment web app (embedding on the server, decoder in the browser)",
        description="Serve a web page to segment images by clicking: left click adds a foreground "
        "point, right click (or Shift/Ctrl/Alt+click) a background point, a drag draws a box; masks "
        "preview under the cursor; objects can be listed, undone, cleared, and downloaded as PNGs or "
        "COCO JSON (RLE). Binds 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--checkpoint", "-c", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument("--model-type", default=None, help="force an architecture instead of detecting it")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload accepted (20)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, metavar="N",
                   help="refuse images with more pixels (decompression-bomb guard; default 50 million)")
    p.add_argument("--cache-images", type=int, default=8, metavar="N",
                   help="embeddings kept in memory (least recently used dropped; default 8)")
    p.add_argument("--decoder", choices=("auto", "server"), default="auto",
                   help="auto: decode in the browser when onnxruntime-web is installed, else on the server")
    p.add_argument("--max-work-mpix", type=float, default=4000, metavar="N",
                   help="most megapixels of full-size masks (image pixels x masks) one Everything or PNG export "
                   "request may produce; larger requests are refused with the numbers (default 4000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear error (port in use, unknown address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on '{host}': {exc.strerror}", "pass an IP address such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}", "choose another --port (0 picks a free one)") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535, got {args.port}")
    # float options accept "inf" and "nan"; a limit has to be a finite number of bytes
    for flag, value, most in (("--max-upload-mb", args.max_upload_mb, MAX_UPLOAD_MB),
                              ("--max-work-mpix", args.max_work_mpix, MAX_WORK_MPIX)):
        if not (0 < value <= most):
            raise InputError(f"{flag} must be a number above 0 and at most {most:g}, got {value:g}")
    if args.max_pixels <= 0 or args.cache_images < 1:
        raise InputError("--max-pixels must be positive and --cache-images at least 1")
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise InputError("pocketsam serve needs Starlette and uvicorn",
                         "in the pocketsam source folder: pip install '.[serve]' (or make serve)") from None

    from pocketsam.cli.common import resolve_checkpoint, warnings_as_lines
    from pocketsam.weights import BUNDLED_NOTE, is_bundled

    checkpoint = resolve_checkpoint(args.checkpoint)
    bundled = is_bundled(args.checkpoint)
    sock = bind(args.host, args.port)  # before the model loads: a busy port fails fast
    from pocketsam.io import terminate_as_interrupt

    engine = None
    try:
        # SIGTERM (a service manager, `kill`) ends serve as Ctrl-C does, so the finally below
        # removes the temp folder; uvicorn shuts down gracefully on it, then raises the
        # signal again, which Python's default handler would turn into an abrupt exit
        with terminate_as_interrupt():
            from pocketsam import build_sam
            from pocketsam.runtime import configure_threads
            from pocketsam.web.app import Engine, ServeSettings, create_app, loopback_hosts

            configure_threads(args.threads)
            with warnings_as_lines():
                sam = build_sam(model_type=args.model_type, checkpoint=checkpoint)
            settings = ServeSettings(
                max_upload_bytes=int(args.max_upload_mb * (1 << 20)), max_pixels=args.max_pixels,
                cache_images=args.cache_images, decoder=args.decoder,
                checkpoint_name=f"bundled model ({checkpoint.name})" if bundled else checkpoint.name,
                max_work_pixels=int(args.max_work_mpix * 1e6), model_note=BUNDLED_NOTE if bundled else None,
            )
            engine = Engine(sam, settings)
            engine.prepare(log=lambda m: print(m, flush=True))
            loopback = is_loopback(args.host)
            app = create_app(engine, allowed_hosts=loopback_hosts() if loopback else None)
            port = sock.getsockname()[1]
            shown = f"[{args.host}]" if ":" in args.host else args.host
            where = "the browser (onnxruntime-web)" if app.state.browser_decoder else "the server"
            print(f"pocketsam serve: http://{shown}:{port}/ — model {settings.checkpoint_name}, masks decoded in "
                  f"{where}; Ctrl-C stops", flush=True)
            if bundled:
                print(f"note: {BUNDLED_NOTE}", file=sys.stderr, flush=True)
            if not loopback:
                print(f"warning: listening on {args.host}: anyone who can reach this machine can use the model "
                      "and upload images", file=sys.stderr, flush=True)
            config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5,
                                    limit_concurrency=256, lifespan="off")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        if engine is not None:
            engine.close()
        sock.close()
    return 0
