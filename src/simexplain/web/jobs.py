"""Explanation jobs: one worker thread per served model, a bounded number of jobs admitted at a time.

A job is admitted (or refused with :class:`QueueFull`) *before* its upload is read, so the memory held by
uploads is bounded by ``capacity × upload limit``. Each model's worker runs its jobs one at a time (the
:class:`~simexplain.pair.PairModel` lock would serialise them anyway); a job is the observer of its
:func:`simexplain.service.run` (:meth:`Job.report`), so it reports the progress and stops at the next chunk
once it is cancelled.
"""

from __future__ import annotations

import math
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import SimexplainError

STATES = ("queued", "running", "done", "failed", "cancelled")


class QueueFull(SimexplainError):
    """Every slot is taken; ``retry_after`` is a guess in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised inside a job's work (at a chunk boundary or between methods) when the job was cancelled."""


@dataclass
class Job:
    """One explanation request's life: its state, progress in [0, 1], stage text, result or error."""

    id: str
    model: str
    work: Callable[[Job], Any] | None
    state: str = "queued"
    progress: float = 0.0
    stage: str = "waiting for the model"
    error: str | None = None
    status_code: int = 200
    result: Any = None
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was cancelled (called between chunks and methods)."""
        if self.cancel_event.is_set():
            raise Cancelled(self.id)

    def report(self, progress: float, stage: str | None = None) -> None:
        """The job's progress (and stage, when a new one begins); a :data:`simexplain.service.Observer`, so
        it raises :class:`Cancelled` once the job is cancelled."""
        self.check()
        self.progress = min(1.0, max(self.progress, float(progress)))
        if stage is not None:
            self.stage = stage

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "state": self.state,
            "progress": round(self.progress, 4),
            "stage": self.stage,
            "error": self.error,
        }


class JobQueue:
    """Admission, per-model workers, cancellation and a bounded memory of finished jobs.

    Example:
        >>> jobs = JobQueue(["m"], capacity=1)
        >>> job = jobs.submit("m", lambda job: 42)
        >>> job.future.result(timeout=5), job.state
        (42, 'done')
        >>> jobs.close()
    """

    def __init__(self, models: list[str], *, capacity: int = 8, keep: int = 64) -> None:
        self.capacity = capacity
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pending = 0  # admitted and not yet finished (queued + running + being uploaded)
        self._seconds: list[float] = []  # how long recent jobs took, for Retry-After
        self._queues: dict[str, queue.Queue] = {name: queue.Queue() for name in models}
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"simexplain-{name}", daemon=True)
            for name, q in self._queues.items()
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------------------------- admission
    def admit(self) -> None:
        """Take a slot or raise :class:`QueueFull`; give it back with :meth:`release` or a submitted job."""
        with self._lock:
            if self._pending >= self.capacity:
                raise QueueFull(
                    f"the server is busy ({self.capacity} explanations queued or running); try again later",
                    self._retry_after(),
                )
            self._pending += 1

    def release(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def _retry_after(self) -> int:
        recent = self._seconds[-8:]
        mean = sum(recent) / len(recent) if recent else 2.0
        return max(1, math.ceil(mean * max(1, self._pending) / max(1, len(self._queues))))

    @property
    def pending(self) -> int:
        return self._pending

    # ------------------------------------------------------------------------------------- jobs
    def submit(self, model: str, work: Callable[[Job], Any], *, admitted: bool = False) -> Job:
        """Queue ``work(job)`` on ``model``'s worker; admits the job first unless ``admitted``."""
        if model not in self._queues:
            raise SimexplainError(f"model {model!r} is not served here")
        if not admitted:
            self.admit()
        job = Job(id=secrets.token_urlsafe(12), model=model, work=work)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._queues[model].put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop; a queued job never starts, a running one stops at its next chunk."""
        job = self.get(job_id)
        if job is not None and job.state in ("queued", "running"):
            job.cancel_event.set()
        return job

    def _forget_old(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.finished is not None]
        for key in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[key]

    def _work(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            self._execute(job)
            del job  # not held while waiting for the next one

    def _execute(self, job: Job) -> None:
        started = time.monotonic()
        try:
            job.check()
            job.state = "running"
            job.result = job.work(job)
            job.state, job.progress, job.stage = "done", 1.0, "done"
        except Cancelled:
            job.state, job.stage, job.error, job.status_code = "cancelled", "cancelled", "cancelled", 409
        except SimexplainError as error:
            job.state, job.stage, job.error, job.status_code = "failed", "failed", _line(error), 422
        except Exception as error:  # noqa: BLE001  (reported to the client as one line, never raised here)
            job.state, job.stage, job.status_code = "failed", "failed", 500
            job.error = f"internal error: {type(error).__name__}: {_line(error)}"
        finally:
            job.work = None  # drops the request (its uploaded bytes) as soon as the job ends
            job.finished = time.monotonic()
            with self._lock:
                self._pending = max(0, self._pending - 1)
                if job.state == "done":
                    self._seconds = (self._seconds + [job.finished - started])[-32:]
            job.future.set_result(job.result)

    def close(self) -> None:
        """Stop the workers after their current job (queued jobs are cancelled)."""
        for job in list(self._jobs.values()):
            job.cancel_event.set()
        for q in self._queues.values():
            q.put(None)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


__all__ = ["STATES", "Cancelled", "Job", "JobQueue", "QueueFull"]
