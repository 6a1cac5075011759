"""The server sheds work nobody waits for, against a real ``simexplain serve`` on loopback.

An abandoned synchronous request is cancelled; idle uploads give their slots back after the body timeout;
SIGTERM and SIGINT stop a busy server and remove its temporary folder. A long job is Smooth-Grad with many
samples, one per chunk, on the tiny model (``--max-samples`` raised for it): it would run for minutes, so a
test that waits for its end fails by its timeout.
"""

from __future__ import annotations

import json
import signal
import threading

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from webtools import connect, health, image_bytes, multipart, running_server, status_of, wait_for  # noqa: E402

FILES = {"image1": ("a.png", image_bytes(0), "image/png"), "image2": ("b.png", image_bytes(1), "image/png")}
LONG = {"methods": "smooth-grad", "params": json.dumps({"samples": 200_000, "batch_size": 1, "seed": 0})}
RAISED = ("--max-samples", "200000")


def test_an_abandoned_synchronous_request_is_cancelled_and_frees_its_slot():
    with running_server(*RAISED) as (base, _):
        head, body = multipart("/api/explain", FILES, LONG)
        with connect(base) as sock:
            sock.sendall(head + body)
            wait_for(lambda: health(base)["pending"] == 1, 30, "the request was not admitted")
        # The client hung up while its job runs: the job stops at its next chunk and gives its slot back.
        wait_for(lambda: health(base)["pending"] == 0, 5, "the abandoned request still holds its slot")
        answer = httpx.post(base + "/api/explain", files=FILES, timeout=60)
        assert answer.status_code == 200, answer.text  # the model is free again


def test_idle_uploads_are_refused_408_and_an_honest_request_then_gets_200():
    queue, timeout = 8, 2
    with running_server("--queue", str(queue), "--body-timeout", str(timeout)) as (base, _):
        head, body = multipart("/api/explain", FILES)
        idle = [connect(base, timeout=30) for _ in range(queue)]
        try:
            for sock in idle:  # headers and a few bytes of the body, then nothing
                sock.sendall(head + body[:100])
            wait_for(lambda: health(base)["pending"] == queue, 30, "the idle uploads were not admitted")
            busy = httpx.post(base + "/api/explain", files=FILES, timeout=60)
            assert busy.status_code == 429  # every slot is held by an idle upload
            answers = [status_of(sock) for sock in idle]
        finally:
            for sock in idle:
                sock.close()
        assert {status for status, _ in answers} == {408}, answers
        assert json.loads(answers[0][1]) == {
            "error": f"the upload did not arrive within {timeout} s; send it again"
        }
        answer = httpx.post(base + "/api/explain", files=FILES, timeout=60)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_job_stops_the_server_and_removes_its_folder(stop, tmp_path):
    with running_server(*RAISED, env={"TMPDIR": str(tmp_path)}) as (base, process):
        with httpx.Client(base_url=base, timeout=60) as client:
            done = client.post("/api/explain", files=FILES).json()  # another client's downloads ...
            assert client.get(done["figures"]["png"]).status_code == 200
            (folder,) = tmp_path.glob("simexplain-web-*")
            assert any(folder.iterdir())  # ... are files in the server's temporary folder
            job = client.post("/api/jobs", files=FILES, data=LONG).json()
            waiting: dict[str, httpx.Response] = {}

            def wait_for_answer() -> None:
                waiting["answer"] = httpx.post(base + "/api/explain", files=FILES, data=LONG, timeout=60)

            thread = threading.Thread(target=wait_for_answer)
            thread.start()
            state = lambda: client.get(f"/api/jobs/{job['id']}").json()["state"]  # noqa: E731
            wait_for(lambda: state() == "running", 30, "the job did not start")
            wait_for(lambda: health(base)["pending"] == 2, 30, "the waiting request was not admitted")
        process.send_signal(stop)
        process.wait(timeout=20)  # a few seconds; without the cancel it would wait for the job
        thread.join(timeout=20)
    assert waiting["answer"].status_code == 503
    assert waiting["answer"].json() == {"error": "the server is shutting down"}
    assert not folder.exists() and list(tmp_path.iterdir()) == []
