"""The OpenAI-compatible HTTP routes, on the app's own model and vectors.

    GET  /v1/models                 the loaded model
    GET  /v1/steering/vectors       what a request's `steering` may choose
    GET  /v1/steering/queue         how many requests wait, and what holds the model
    POST /v1/chat/completions       chat (the model's chat template), streamed or not
    POST /v1/completions            raw completion, streamed or not

Thin on purpose: a route checks the body into a Job (ui/api/bodies.py),
hands it to the app's GenerationQueue (steering/serving) and turns the
ticket's events into OpenAI's JSON or server-sent events. A client that
goes away (a closed stream, a dropped connection) cancels its ticket: a
waiting request never runs, a running one ends at its next token.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from steering.errors import SteerSwarmError
from steering.limits import MAX_REQUEST_BYTES
from steering.serving.catalog import VectorCatalog
from steering.serving.queue import DONE, FAILED, RUNNING, TEXT, WAITING, GenerationQueue, Ticket
from steering.serving.rows import RowResult
from steering.session import ModelSession
from ui.api import replies
from ui.api.bodies import CHAT, COMPLETION, ParsedRequest, parse_request, read_json, too_large
from ui.api.errors import ApiError, api_error
from ui.api.replies import Reply

log = logging.getLogger(__name__)

# While a request waits for the model, a stream gets a comment this often
# (a person watching it with curl reads why; clients skip it), and a
# non-streamed request checks this often whether its client is still there.
WAIT_NOTE_SECONDS = 5.0
DISCONNECT_CHECK_SECONDS = 1.0
OWNER = "steerswarm"


def build_api(
    session: ModelSession, queue: GenerationQueue, api_key: str | None = None
) -> FastAPI:
    """The FastAPI app of the OpenAI-compatible server. With `api_key`, every
    request must carry `Authorization: Bearer <api_key>`."""
    app = FastAPI(title="steerswarm OpenAI-compatible API", docs_url=None, redoc_url=None)
    catalog: VectorCatalog = queue.catalog

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Response:
        if api_key is not None:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(
                token.strip().encode(), api_key.encode()
            ):
                return ApiError(
                    401,
                    "Incorrect or missing API key: send the header Authorization: Bearer <key> "
                    "with the key this server was started with (--api-key).",
                    code="invalid_api_key",
                ).response()
        response: Response = await call_next(request)
        return response

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail), code=None).response()

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, str(exc)).response()

    @app.exception_handler(Exception)
    async def on_error(_request: Request, exc: Exception) -> JSONResponse:
        return api_error(exc).response()

    def served() -> tuple[Any, str]:
        try:
            steerer = session.current().steerer
        except SteerSwarmError as exc:  # no model, or one we cannot steer: 503
            raise api_error(exc) from None
        return steerer, steerer.info.name

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        _steerer, name = served()
        return {"object": "list", "data": [_model(name)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        _steerer, name = served()
        if model_id != name:
            raise ApiError(
                404, f"The model {model_id!r} does not exist; this server serves {name!r}.",
                param="model", code="model_not_found",
            )
        return _model(name)

    @app.get("/v1/steering/vectors")
    async def vectors() -> dict[str, Any]:
        steerer, name = served()
        entries = catalog.entries(steerer)
        return {
            "object": "list",
            "model": name,
            "data": [entry.to_json() for entry in entries],
            "active": [vector.id for vector in steerer.user_vectors],
        }

    @app.get("/v1/steering/queue")
    async def status() -> dict[str, Any]:
        return queue.status().to_json()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        return await _complete(request, CHAT)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        return await _complete(request, COMPLETION)

    async def _complete(request: Request, kind: str) -> Response:
        body = read_json(await _body(request))
        steerer, name = served()
        try:  # tokenizing a long conversation should not hold up other streams
            parsed = await run_in_threadpool(parse_request, body, kind, steerer, catalog, name)
        except SteerSwarmError as exc:
            raise api_error(exc) from None
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def listen(event: str, payload: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (event, payload))

        try:
            ticket = queue.submit(parsed.job, listen)
        except SteerSwarmError as exc:  # too many waiting (429), shutting down
            raise api_error(exc) from None
        reply = Reply(kind, name)
        if parsed.stream:
            return StreamingResponse(
                _stream(ticket, events, reply, parsed, queue),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _whole(request, ticket, events, reply)

    return app


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


async def _body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise too_large(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _whole(
    request: Request, ticket: Ticket, events: asyncio.Queue[tuple[str, Any]], reply: Reply
) -> Response:
    """Wait for the ticket; a client that hangs up cancels it."""
    try:
        while True:
            try:
                event, payload = await asyncio.wait_for(events.get(), DISCONNECT_CHECK_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody reads it
                continue
            if event == DONE:
                return JSONResponse(reply.whole(payload, ticket.vectors))
            if event == FAILED:
                return api_error(payload).response()
    finally:
        ticket.cancel()


async def _stream(
    ticket: Ticket,
    events: asyncio.Queue[tuple[str, Any]],
    reply: Reply,
    parsed: ParsedRequest,
    queue: GenerationQueue,
) -> AsyncIterator[str]:
    """Server-sent events: the role, the text as it grows, the finish reason,
    the usage when asked, [DONE]. Ends the ticket however the stream ends."""
    try:
        if reply.kind == CHAT:
            yield reply.chunk(role=True)
        while True:
            try:
                event, payload = await asyncio.wait_for(events.get(), WAIT_NOTE_SECONDS)
            except TimeoutError:
                if ticket.state == WAITING:
                    yield replies.comment(_waiting(ticket, queue))
                continue
            if event == RUNNING:
                continue
            if event == TEXT:
                yield reply.chunk(text=payload)
            elif event == DONE:
                result: RowResult = payload
                yield reply.chunk(finish=result.finish_reason)
                if parsed.include_usage:
                    yield reply.usage_chunk(result)
                yield replies.DONE
                return
            elif event == FAILED:
                yield api_error(payload).sse()
                return
    finally:
        ticket.cancel()


def _waiting(ticket: Ticket, queue: GenerationQueue) -> str:
    position = ticket.position()
    status = queue.status()
    where = f"position {position} of {status.waiting}" if position else "next"
    return f"waiting for the model ({where}): {status.note}"
