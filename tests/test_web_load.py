"""Load tests on loopback against one real server, each bounded in count and time (every request and socket
has a timeout, the server is stopped by its pid).

- 20 concurrent explain requests: every answer is 200 or 429 (with ``Retry-After``), never a 5xx; the
  server's peak memory stays within a bound.
- 30 concurrent clients, honest, abandoned (they hang up while their long job runs) and idle (they never
  finish their upload): every honest request is answered 200 or 429, ``/api/health`` answers throughout, and
  the abandoned and idle ones give their slots back.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from webtools import (  # noqa: E402
    connect,
    health,
    image_bytes,
    multipart,
    rss_bytes,
    running_server,
    status_of,
    wait_for,
)

REQUESTS = 20
QUEUE = 4
# Peak memory growth allowed during the flood. Measured here with these 8 MB bodies: +88 MB with --queue 4,
# +272 MB when all 20 are admitted at once (--queue 20): the bound tells a bounded server from an unbounded.
GROWTH_LIMIT = 180_000_000


def test_twenty_concurrent_requests_get_200_or_429_and_memory_stays_bounded():
    big = image_bytes(7, size=1630, format="BMP")  # 8 MB: uploads that add up when they are all held
    files = {"image1": ("a.bmp", big, "image/bmp"), "image2": ("b.png", image_bytes(8), "image/png")}
    data = {"methods": "interaction-cam,smooth-grad", "params": '{"samples": 8, "seed": 0}'}
    with running_server("--queue", str(QUEUE), "--upload-limit", "10") as (base, process):
        with httpx.Client(base_url=base, timeout=60) as warm:  # the first run pays one-off costs
            assert warm.post("/api/explain", files=files, data=data).status_code == 200
        baseline = rss_bytes(process.pid)

        def one(_: int) -> httpx.Response:
            with httpx.Client(base_url=base, timeout=60) as client:
                return client.post("/api/explain", files=files, data=data)

        with ThreadPoolExecutor(REQUESTS) as pool:
            responses = list(pool.map(one, range(REQUESTS)))
        peak = rss_bytes(process.pid, "VmHWM")
        with httpx.Client(base_url=base, timeout=10) as client:
            health = client.get("/api/health").json()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= QUEUE  # the admitted ones are answered
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1 and "busy" in response.json()["error"]
        else:
            assert len(response.json()["explanations"]) == 2
    assert health["pending"] == 0  # nothing left behind
    assert peak - baseline < GROWTH_LIMIT, f"peak {peak / 1e6:.0f} MB over a {baseline / 1e6:.0f} MB baseline"


MIXED = {"honest": 12, "abandoned": 9, "idle": 9}  # 30 clients at once
FILES = {"image1": ("a.png", image_bytes(0), "image/png"), "image2": ("b.png", image_bytes(1), "image/png")}
LONG = {"methods": "smooth-grad", "params": json.dumps({"samples": 200_000, "batch_size": 1, "seed": 0})}


def test_honest_abandoned_and_idle_clients_at_once():
    options = ("--queue", "4", "--body-timeout", "2", "--max-samples", "200000")
    with running_server(*options) as (base, _):
        long_request = b"".join(multipart("/api/explain", FILES, LONG))
        head, body = multipart("/api/explain", FILES)

        def honest() -> int:
            with httpx.Client(base_url=base, timeout=60) as client:
                return client.post("/api/explain", files=FILES).status_code

        def abandoned() -> None:
            with connect(base) as sock:  # the whole request, then hang up while it runs (or waits)
                sock.sendall(long_request)
                time.sleep(0.5)

        def idle() -> int:
            with connect(base, timeout=30) as sock:  # headers and a few bytes, then nothing
                sock.sendall(head + body[:100])
                return status_of(sock)[0]

        polls, stop = [], threading.Event()

        def poll_health() -> None:
            while not stop.is_set():
                try:
                    polls.append(health(base, timeout=5)["status"])
                except OSError as error:
                    polls.append(repr(error))
                time.sleep(0.2)

        kinds = [kind for kind, count in MIXED.items() for _ in range(count)]
        random.Random(0).shuffle(kinds)
        clients = {"honest": honest, "abandoned": abandoned, "idle": idle}
        poller = threading.Thread(target=poll_health)
        poller.start()
        try:
            with ThreadPoolExecutor(len(kinds)) as pool:
                answers = list(pool.map(lambda kind: (kind, clients[kind]()), kinds))
            wait_for(lambda: health(base)["pending"] == 0, 15, "abandoned or idle clients still hold slots")
        finally:
            stop.set()
            poller.join()
        after = honest()
    statuses = {kind: [status for k, status in answers if k == kind] for kind in MIXED}
    assert set(statuses["honest"]) <= {200, 429}, statuses
    assert set(statuses["idle"]) <= {408, 429}, statuses  # refused at once, or once the body timeout passed
    assert len(polls) >= 5 and set(polls) == {"ok"}, polls  # the server answered throughout
    assert after == 200
