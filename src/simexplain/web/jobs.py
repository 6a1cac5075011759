"""Explanation jobs: one worker thread per served model, a bounded number of jobs admitted at a time.

A job is admitted (or refused with :class:`QueueFull`) *before* its upload is read, so the memory held by
uploads is bounded by ``capacity × upload limit``. Each model's worker runs its jobs one at a time (the
:class:`~simexplain.pair.PairModel` lock would serialise them anyway); a job is the observer of its
:func:`simexplain.service.run` (:meth:`Job.report`), so it reports the progress and stops at the next chunk
once it is cancelled. A cancelled job that has not started leaves its model's queue at once, and its slot
with it.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import SimexplainError

STATES = ("queued", "running", "done", "failed", "cancelled")
# What the clients waiting for the jobs of a stopping server are told.
SHUTTING_DOWN = "the server is shutting down"


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
        self._changed = threading.Condition(self._lock)  # a job was queued, or the queue closed
        self._closed = False
        self._pending = 0  # admitted and not yet finished (queued + running + being uploaded)
        self._seconds: list[float] = []  # how long recent jobs took, for Retry-After
        # Each model's waiting jobs: a deque, so that a cancelled job leaves it at once (and frees its slot).
        self._waiting: dict[str, deque[Job]] = {name: deque() for name in models}
        self._threads = [
            threading.Thread(target=self._work, args=(name,), name=f"simexplain-{name}", daemon=True)
            for name in self._waiting
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
        return max(1, math.ceil(mean * max(1, self._pending) / max(1, len(self._waiting))))

    @property
    def pending(self) -> int:
        return self._pending

    # ------------------------------------------------------------------------------------- jobs
    def submit(self, model: str, work: Callable[[Job], Any], *, admitted: bool = False) -> Job:
        """Queue ``work(job)`` on ``model``'s worker; admits the job first unless ``admitted``."""
        if model not in self._waiting:
            raise SimexplainError(f"model {model!r} is not served here")
        if not admitted:
            self.admit()
        job = Job(id=secrets.token_urlsafe(12), model=model, work=work)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
            self._waiting[model].append(job)
            self._changed.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str, reason: str = "cancelled", status_code: int = 409) -> Job | None:
        """Stop a job: a queued one leaves the queue now (its slot is free at once), a running one stops at
        its next chunk. ``reason`` and ``status_code`` are what a client waiting for it is answered."""
        job = self.get(job_id)
        if job is None:
            return None
        with self._lock:
            if job.state not in ("queued", "running"):
                return job
            job.cancel_event.set()
            job.error, job.status_code = reason, status_code
            if job.state != "queued":
                return job
            self._waiting[job.model].remove(job)
            job.state = "cancelled"  # under the lock: a second cancel finds it finished
        self._finish(job, "cancelled", None)
        return job

    def cancel_all(self, reason: str = SHUTTING_DOWN, status_code: int = 503) -> None:
        """Cancel every queued and running job (a server that stops)."""
        with self._lock:
            unfinished = [job.id for job in self._jobs.values() if job.state in ("queued", "running")]
        for job_id in unfinished:
            self.cancel(job_id, reason, status_code)

    def _forget_old(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.finished is not None]
        for key in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[key]

    def _next(self, model: str) -> Job | None:
        """The model's next job, marked running; ``None`` once the queue is closed."""
        with self._changed:
            while not self._waiting[model] and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            job = self._waiting[model].popleft()
            job.state = "running"
            return job

    def _work(self, model: str) -> None:
        while (job := self._next(model)) is not None:
            self._execute(job)
            del job  # not held while waiting for the next one

    def _execute(self, job: Job) -> None:
        started = time.monotonic()
        result, state = None, "done"
        try:
            job.check()
            result = job.work(job)
        except Cancelled:
            state = "cancelled"
        except SimexplainError as error:
            state, job.error, job.status_code = "failed", _line(error), 422
        except Exception as error:  # noqa: BLE001  (reported to the client as one line, never raised here)
            state, job.status_code = "failed", 500
            job.error = f"internal error: {type(error).__name__}: {_line(error)}"
        self._finish(job, state, result, seconds=time.monotonic() - started)

    def _finish(self, job: Job, state: str, result: Any, seconds: float | None = None) -> None:
        """The job's end: its state and result, its uploaded bytes let go, its slot free, its waiter told."""
        job.work = None  # drops the request (its uploaded bytes) as soon as the job ends
        job.result = result
        if state == "done":
            job.progress, job.error, job.status_code = 1.0, None, 200
        elif state == "cancelled":
            job.error = job.error or "cancelled"
        job.state = job.stage = state
        job.finished = time.monotonic()
        with self._lock:
            self._pending = max(0, self._pending - 1)
            if state == "done" and seconds is not None:
                self._seconds = (self._seconds + [seconds])[-32:]
        job.future.set_result(result)

    def close(self) -> None:
        """Cancel every job and stop the workers (a running job stops at its next chunk)."""
        self.cancel_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


__all__ = ["SHUTTING_DOWN", "STATES", "Cancelled", "Job", "JobQueue", "QueueFull"]
