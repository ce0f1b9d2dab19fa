"""The FastAPI application factory."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evidence_ledger import __version__

from . import errors
from .routers import flows, logs, notary, pages, system, tokens, trace
from .runtime import Runtime
from .settings import Settings


class BodyLimitMiddleware:
    """Rejects bodies over the limit with 413, by Content-Length or while streaming."""

    # Evidence uploads and verification take files up to the upload limit; all else the body limit.
    UPLOAD_PATHS = re.compile(r"^(/api/v1/cases/[^/]+/files(/prepare)?|/api/v1/evidence/verify|/verify)$")

    def __init__(self, app: ASGIApp, limit_bytes: int, upload_limit_bytes: int | None = None) -> None:
        self.app = app
        self.limit_bytes = limit_bytes
        # Multipart framing around a file at the limit adds a little; allow 1 MiB for it.
        self.upload_limit_bytes = (upload_limit_bytes or limit_bytes) + (1 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit_bytes if self.UPLOAD_PATHS.match(scope["path"]) else self.limit_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise errors.BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except errors.BodyTooLargeError:
            if not started:
                await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    resp = JSONResponse(errors.error_body(
        "payload_too_large", f"request body exceeds the limit of {limit} bytes"), status_code=413)
    await send({"type": "http.response.start", "status": 413, "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Settings are read here, at start, never at import."""
    settings = settings or (runtime.settings if runtime else Settings())
    rt = runtime or Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt.start()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(
        title="Evidence ledger",
        version=__version__,
        description=(
            "Append-only Merkle logs (RFC 9162) whose signed checkpoints (C2SP tlog-checkpoint) "
            "are anchored on an EVM chain. Authenticate with `Authorization: Bearer <token>`."),
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.settings = settings
    errors.install(app)
    app.include_router(system.router)
    app.include_router(logs.router, prefix="/api/v1")
    app.include_router(tokens.router, prefix="/api/v1")
    app.include_router(notary.router, prefix="/api/v1")
    app.include_router(trace.router, prefix="/api/v1/trace")
    app.include_router(trace.resolver)
    app.include_router(flows.router, prefix="/api/v1/flows")
    app.include_router(flows.pages_router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(BodyLimitMiddleware, limit_bytes=settings.max_body_bytes,
                       upload_limit_bytes=settings.max_upload_bytes)
    return app
