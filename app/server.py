"""Serving the app with a graceful shutdown: uvicorn alone, or as gunicorn's worker.

On SIGTERM (or SIGINT, or gunicorn's max-requests restart) stock uvicorn closes
every WebSocket with 1012 at once, before the app can say anything, and only
then runs the lifespan shutdown. `GracefulServer` puts one step in front:

1. stop accepting connections (the load balancer and the other workers take them);
2. `GracefulShutdown.drain()`: every open chat stream stops its model call
   (settling its credits), sends `{"error": "server_shutting_down", …}`, closes
   with 1012 and gives its concurrency leases back;
3. in-flight HTTP requests finish, bounded by what is left of
   `timeout_graceful_shutdown`; those still running then are cancelled and get
   a moment to give back their leases and settle their credits (stock uvicorn
   goes straight on, and their cleanup meets a closed database);
4. the lifespan shutdown closes the clients.

`gunicorn 'app.main:create_app()' --worker-class app.server.UvicornWorker`
uses it under gunicorn (the Dockerfile does); `adiuva serve` runs one process.

Both also bound what the server buffers before the app sees a request:
httptools keeps a request's headers whole however long they are, so
`HeaderCappedHttpToolsProtocol` answers 431 and closes once a request's head
passes `MAX_HEADER_BYTES`; h11's incomplete-event buffer gets the same bound
(h11 answers 400 past it); a WebSocket message is at most `MAX_JSON_BODY_BYTES`.
WebSockets go without permessage-deflate, whose per-socket compressor would be
the largest thing an idle chat socket holds.
The app's own middleware (app/gateway/body_limit.py) applies the exact caps.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import sys
import uuid
from typing import Any

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker as BaseUvicornWorker

from app.config import Settings
from app.deployment import check_environment, refusal
from app.shutdown import LIFESPAN_STATE_KEY, GracefulShutdown

log = logging.getLogger(__name__)

# Without a configured bound, how long the streams may take to say goodbye.
DEFAULT_DRAIN_SECONDS = 10.0
# Requests cut at the timeout get this long to give back their leases and credits.
CLEANUP_SECONDS = 5.0
# The worker must be done before gunicorn's arbiter kills it at --graceful-timeout.
ARBITER_MARGIN_SECONDS = 5 + int(CLEANUP_SECONDS)


class HeaderCappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over `max_header_bytes` with 431.

    httptools gathers each header and the URL whole before handing them over, with
    no bound of its own; this counts the bytes that arrive while a request's head is
    still incomplete, so at most the cap and one socket read are ever held.
    """

    max_header_bytes = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._send_431()

    def _send_431(self) -> None:
        request_id = uuid.uuid4().hex
        log.warning(
            "request head over %d bytes refused", self.max_header_bytes, extra={"status": 431}
        )
        body = json.dumps(
            {
                "error": "request_headers_too_large",
                "message": f"The request headers are larger than the {self.max_header_bytes} "
                "bytes allowed.",
                "request_id": request_id,
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def server_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options bounding what the server holds for one request or socket."""
    protocol = type(
        "HeaderCappedHttpToolsProtocol",
        (HeaderCappedHttpToolsProtocol,),
        {"max_header_bytes": settings.MAX_HEADER_BYTES},
    )
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": settings.MAX_HEADER_BYTES,
        # A chat frame is JSON: the same cap as a JSON body (the app refuses
        # frames over WS_MAX_FRAME_BYTES itself, with a proper close reason).
        "ws_max_size": max(settings.MAX_JSON_BODY_BYTES, settings.WS_MAX_FRAME_BYTES),
        # No permessage-deflate: its zlib streams live as long as the socket, about
        # 45 KiB each (half of what an idle chat socket costs), and the frames it
        # would compress are a few tokens of JSON each.
        "ws_per_message_deflate": False,
    }


class GracefulServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The app is loaded: its ~600,000 objects (the model clients above all) live as
        # long as the process. Frozen, the garbage collector stops walking them on
        # every full collection (0.4 s each on a 2-core host), which the churn of
        # thousands of open sockets would otherwise trigger again and again.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's `Server.shutdown`, with the streams drained before connections close,
        and requests cut at the timeout allowed to clean up before the lifespan ends."""
        log.info("shutting down")
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = self.config.timeout_graceful_shutdown
        # New connections go to the other workers (and hosts) from here on.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()

        graceful = self.lifespan.state.get(LIFESPAN_STATE_KEY)
        if isinstance(graceful, GracefulShutdown) and not self.force_exit:
            try:
                await asyncio.wait_for(
                    graceful.drain(), DEFAULT_DRAIN_SECONDS if budget is None else budget
                )
            except TimeoutError:
                log.warning("chat streams still open after the drain timeout")

        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        left = None if budget is None else max(0.0, budget - (loop.time() - started))
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=left)
        except TimeoutError:
            tasks = list(self.server_state.tasks)
            log.error("cancelling %d request(s) still running at the graceful timeout", len(tasks))
            for task in tasks:
                task.cancel(msg="graceful shutdown timeout exceeded")
            # Their cleanup (leases, credit settlements) needs the database the lifespan
            # is about to close.
            if tasks:
                await asyncio.wait(tasks, timeout=CLEANUP_SECONDS)

        if not self.force_exit:
            await self.lifespan.shutdown()


class UvicornWorker(BaseUvicornWorker):
    """gunicorn's uvicorn worker, running `GracefulServer`.

    In-flight requests may run until shortly before gunicorn's `--graceful-timeout`;
    then they are cancelled, so the worker still exits on its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Read by the base class when it builds the uvicorn.Config.
        self.CONFIG_KWARGS = {**BaseUvicornWorker.CONFIG_KWARGS, **server_limits(Settings())}
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = max(
            1, int(self.cfg.graceful_timeout) - ARBITER_MARGIN_SECONDS
        )

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        # Called by gunicorn's master before it forks any worker: a deployment whose
        # workers could not share their stores is refused once, in one line, with the
        # boot-error status. (Refused by every worker at once instead, the master could
        # fail while halting, on the second worker's exit, with a traceback.)
        refused = refusal(check_environment(cfg.workers))
        if refused is not None:
            log.error(refused)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def init_process(self) -> None:
        # The same rules in each worker, before the app loads (its environment is the
        # master's, so this refuses only what changed in between).
        refused = refusal(check_environment(self.cfg.workers))
        if refused is not None:
            self.log.error(refused)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        super().init_process()

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = GracefulServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def serve(host: str, port: int, *, graceful_timeout: int = 25, log_level: str = "info") -> None:
    """One uvicorn process on the app factory, with the graceful shutdown."""
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        # Our middleware reads X-Forwarded-For, and only from TRUSTED_PROXIES.
        proxy_headers=False,
        timeout_graceful_shutdown=graceful_timeout,
        log_level=log_level,
        **server_limits(Settings()),
    )
    GracefulServer(config).run()
