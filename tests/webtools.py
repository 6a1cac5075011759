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
def running_server(*options: str, timeout: float = 60) -> Iterator[tuple[str, subprocess.Popen]]:
    """``simexplain serve`` in a child process on a free loopback port; stopped (by its pid) afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "simexplain", "serve", "--port", str(port), "--model", TINY, *options]
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
