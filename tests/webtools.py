"""Shared by the web tests: small generated images and a real ``simexplain serve`` on a loopback port."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

import simexplain

TESTS = Path(__file__).resolve().parent
SRC = Path(simexplain.__file__).resolve().parents[1]  # the simexplain these tests import
TINY = "python:tiny:evaluation_model"
TINY_B = "python:tiny:evaluation_model_b"


def image_bytes(seed: int, size: int = 40, format: str = "PNG") -> bytes:
    """A small random-colour image with a bright square, encoded as ``format``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
    corner = int(rng.integers(0, size // 2))
    pixels[corner : corner + size // 3, corner : corner + size // 3] = 230
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict[str, str]:
    """This checkout's ``src`` and ``tests`` (for the tiny models) first; one thread per server."""
    path = os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def running_server(
    *options: str, timeout: float = 60, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``simexplain serve`` in a child process on a free loopback port (``env``: more environment variables);
    stopped (by its pid) afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "simexplain", "serve", "--port", str(port), "--model", TINY, *options]
    process = subprocess.Popen(
        command,
        env={**environment(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not answer /api/health in time") from None
                time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``) or its peak (``VmHWM``), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


@contextlib.contextmanager
def server_in_thread(settings) -> Iterator[str]:
    """The app under uvicorn in a background thread of this process, on a free loopback port."""
    import threading

    import uvicorn

    from simexplain.web import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------------------------------------- raw clients
def multipart(path: str, files: dict, data: dict | None = None) -> tuple[bytes, bytes]:
    """An HTTP/1.1 POST of a multipart form to ``path`` on loopback, as (head, body) bytes: a raw socket can
    then send part of it, or all of it and hang up."""
    import httpx

    request = httpx.Request("POST", "http://127.0.0.1" + path, files=files, data=data or {})
    body = request.read()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {request.headers['content-type']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode(), body


def connect(base: str, timeout: float = 10) -> socket.socket:
    """A TCP connection to the server at ``base`` (loopback), with a timeout on every read."""
    host, port = base.rsplit("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def status_of(sock: socket.socket) -> tuple[int, str]:
    """The status and body of the answer on ``sock`` (read until the server closes or the body is whole)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, ""
    lengths = [
        line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    ]
    length = int(lengths[0]) if lengths else None
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body.decode(errors="replace")


def health(base: str, timeout: float = 5) -> dict:
    """``GET /api/health`` as a dict."""
    import json

    with urllib.request.urlopen(base + "/api/health", timeout=timeout) as response:
        return json.load(response)


def wait_for(condition, timeout: float, message: str, every: float = 0.05):
    """Poll ``condition()`` until it returns something true (returned), or fail with ``message``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (within {timeout:g} s)")
        time.sleep(every)
