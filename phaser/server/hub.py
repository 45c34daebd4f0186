"""The publisher/subscriber hub: the latest update of each job, pushed to WebSocket subscribers.

Everything runs on the server's event loop and nothing here awaits a subscriber: publishing puts
a frame in each subscriber's small queue and returns. A subscriber that falls behind loses stale
frames, never the newest: a pending ``update`` frame is replaced by a newer one, a pending ``job``
frame likewise, and log frames beyond :data:`MAX_PENDING_LOGS` drop the oldest (each log frame
carries its line indices, so a page can fetch a gap from ``/api/jobs/{id}/log``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Any

MAX_PENDING_LOGS = 64
MAX_LATEST = 32  # jobs whose latest update (with its previews) is kept in memory


class Subscriber:
    """One WebSocket's pending frames."""

    def __init__(self) -> None:
        self.update: dict | None = None
        self.job: dict | None = None
        self.logs: deque[dict] = deque(maxlen=MAX_PENDING_LOGS)
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, frame: dict) -> None:
        kind = frame["type"]
        if kind == "update":
            self.dropped += self.update is not None
            self.update = frame
        elif kind == "job":
            self.job = frame
        else:
            self.dropped += len(self.logs) == self.logs.maxlen
            self.logs.append(frame)
        self._ready.set()

    async def next_frames(self) -> list[dict]:
        """Wait for pending frames and take them all, oldest kind first (job, logs, update)."""
        await self._ready.wait()
        self._ready.clear()
        frames = ([self.job] if self.job else []) + list(self.logs) + ([self.update] if self.update else [])
        self.job, self.update = None, None
        self.logs.clear()
        return frames


class Hub:
    """Latest update per job (a bounded LRU) and the subscribers of each job."""

    def __init__(self, max_latest: int = MAX_LATEST):
        self.max_latest = max_latest
        self.latest: OrderedDict[int, dict] = OrderedDict()
        self.subscribers: dict[int, set[Subscriber]] = {}

    def subscribe(self, job_id: int) -> Subscriber:
        sub = Subscriber()
        self.subscribers.setdefault(job_id, set()).add(sub)
        return sub

    def unsubscribe(self, job_id: int, sub: Subscriber) -> None:
        subs = self.subscribers.get(job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[job_id]

    def publish(self, job_id: int, frame: dict) -> int:
        """Hand ``frame`` to every subscriber of the job (never waits); returns how many."""
        if frame["type"] == "update":
            self.latest[job_id] = frame
            self.latest.move_to_end(job_id)
            while len(self.latest) > self.max_latest:
                self.latest.popitem(last=False)
        subs = self.subscribers.get(job_id, ())
        for sub in subs:
            sub.put(frame)
        return len(subs)

    def forget(self, job_id: int) -> None:
        """Drop a deleted job's latest update."""
        self.latest.pop(job_id, None)

    def stats(self) -> dict[str, Any]:
        return {
            "latest": len(self.latest),
            "subscribers": sum(len(s) for s in self.subscribers.values()),
            "dropped": sum(sub.dropped for subs in self.subscribers.values() for sub in subs),
        }
