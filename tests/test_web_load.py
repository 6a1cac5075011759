"""A load test on loopback: 20 concurrent explain requests against one real server.

Every answer is 200 or 429 (with ``Retry-After``), never a 5xx; the server's peak memory stays within a bound;
the test stops by itself (every request has a timeout, the server is stopped by its pid).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from webtools import image_bytes, rss_bytes, running_server  # noqa: E402

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
