"""Mail off the request path: a bounded queue and one supervised sender per worker.

A route hands over a *job* (`Mailer.submit`) and returns at once; the sender runs the
job (which may read and write the database in its own transaction, then render the
message) and delivers the message through the backend, retrying a failed delivery
with a growing delay (`MAIL_FIRST_RETRY_SECONDS`, doubled each time, at most
`MAIL_MAX_ATTEMPTS` tries). A job that fails before it has a message is logged and
dropped: the user asks again.

The queue lives in the worker's memory: messages still queued when the process dies
are lost (the user asks again). At shutdown the lifespan waits up to
`MAIL_DRAIN_SECONDS` for the queue to empty before it stops the sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from email.message import EmailMessage

from fastapi import FastAPI

from app.config import Settings
from app.mail.backends import MailBackend, build_backend

log = logging.getLogger(__name__)

# Runs on the sender; returns the message to deliver, or None when there is nothing to
# send (the address has no account, say).
MailJob = Callable[[], Awaitable[EmailMessage | None]]


class Mailer:
    def __init__(
        self,
        backend: MailBackend,
        *,
        max_attempts: int,
        first_retry: float,
        queue_size: int,
    ) -> None:
        self.backend = backend
        self.max_attempts = max_attempts
        self.first_retry = first_retry
        self._queue: asyncio.Queue[tuple[str, MailJob]] = asyncio.Queue(queue_size)
        self.sent = 0
        self.failed = 0

    def submit(self, name: str, job: MailJob) -> bool:
        """Queue a job without waiting; False (and a warning) if the queue is full."""
        try:
            self._queue.put_nowait((name, job))
        except asyncio.QueueFull:
            log.warning("mail queue full; message dropped", extra={"template": name})
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def join(self) -> None:
        """Wait until every job queued so far has been delivered or given up."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            name, job = await self._queue.get()
            try:
                await self._handle(name, job)
            finally:
                self._queue.task_done()

    async def _handle(self, name: str, job: MailJob) -> None:
        try:
            message = await job()
        except Exception:
            self.failed += 1
            log.exception("mail job failed; nothing sent", extra={"template": name})
            return
        if message is None:
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.backend.send(message)
            except Exception as exc:
                if attempt == self.max_attempts:
                    self.failed += 1
                    log.error(
                        "mail delivery failed; giving up",
                        extra={"template": name, "attempts": attempt, "reason": repr(exc)},
                    )
                    return
                delay = self.first_retry * 2 ** (attempt - 1)
                log.warning(
                    "mail delivery failed; retrying",
                    extra={"template": name, "attempt": attempt, "retry_in": delay},
                )
                await asyncio.sleep(delay)
            else:
                self.sent += 1
                return


@asynccontextmanager
async def mail_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The mailer and its sender task; queued mail gets `MAIL_DRAIN_SECONDS` at shutdown."""
    mailer = Mailer(
        build_backend(settings),
        max_attempts=settings.MAIL_MAX_ATTEMPTS,
        first_retry=settings.MAIL_FIRST_RETRY_SECONDS,
        queue_size=settings.MAIL_QUEUE_SIZE,
    )
    app.state.mailer = mailer
    task = asyncio.create_task(mailer.run(), name="mail-sender")
    try:
        yield
    finally:
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(mailer.join()), settings.MAIL_DRAIN_SECONDS)
        if mailer.queued:
            log.warning("shutting down with mail still queued", extra={"queued": mailer.queued})
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
