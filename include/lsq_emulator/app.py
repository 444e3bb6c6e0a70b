"""The FastAPI app: LeadSquared's API paths plus the unauthenticated inspection API under /_emulator/."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from lsq_emulator.emulator import ApiRequest, Emulator
from lsq_emulator.store import RESET_STATES

INSPECTION_PREFIX = "/_emulator"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class DroppedResponse(Response):
    """Starts a response that promises a body it never finishes: the server then closes the
    connection, and the client sees a protocol/connection error instead of an answer."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"Status":"Succ', "more_body": True})
        # Returning without the final body message: uvicorn closes the transport mid-response.


class TrickledResponse(Response):
    """A whole answer sent one byte every ``every`` seconds (a congested link, a proxy that drips): each
    byte arrives well within a socket read timeout, the whole answer much later."""

    def __init__(self, payload: bytes, status: int, media_type: str, every: float, stopping: threading.Event) -> None:
        super().__init__(status_code=status)
        self.payload, self.content_type, self.every, self.stopping = payload, media_type, every, stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", self.content_type.encode()), (b"content-length", str(len(self.payload)).encode())]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        for i in range(len(self.payload)):
            await _pause(self.every, self.stopping)
            await send({"type": "http.response.body", "body": self.payload[i : i + 1], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pause(seconds: float, stopping: threading.Event) -> None:
    """Sleep ``seconds`` without blocking the loop; cut short when the emulator is stopping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not stopping.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 0.1))


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any]:
    data = json.loads((await request.body()).decode("utf-8") or "{}")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def create_app(emulator: Emulator) -> FastAPI:
    """Build the web app serving ``emulator``."""
    app = FastAPI(title="LeadSquared Lead.Reset emulator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(f"{INSPECTION_PREFIX}/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "base_url": emulator.base_url}

    @app.get(f"{INSPECTION_PREFIX}/calls")
    def calls() -> list[dict[str, Any]]:
        return emulator.calls()

    @app.get(f"{INSPECTION_PREFIX}/resets")
    def resets(state: str | None = None) -> Response:
        if state is not None and state not in RESET_STATES:
            return _bad_request(f"state must be one of {', '.join(RESET_STATES)}")
        return JSONResponse(emulator.resets(state))

    @app.get(f"{INSPECTION_PREFIX}/stats")
    def stats() -> dict[str, Any]:
        return emulator.stats()

    @app.get(f"{INSPECTION_PREFIX}/leads")
    def leads() -> list[dict[str, Any]]:
        return emulator.leads()

    @app.get(f"{INSPECTION_PREFIX}/leads/{{lead_id}}")
    def lead(lead_id: str) -> Response:
        found = emulator.lead(lead_id)
        if found is None:
            return JSONResponse({"error": f"no lead {lead_id}"}, status_code=404)
        return JSONResponse(found)

    @app.post(f"{INSPECTION_PREFIX}/leads")
    async def add_leads(request: Request) -> Response:
        try:
            data = await _json_object(request)
            if not isinstance(data.get("leads"), list):
                raise ValueError('expected {"leads": [...]}')
            added = emulator.add_leads(data["leads"])
        except ValueError as exc:
            return _bad_request(str(exc))
        return JSONResponse({"added": added})

    @app.post(f"{INSPECTION_PREFIX}/clear-calls")
    def clear_calls() -> dict[str, Any]:
        emulator.clear_calls()
        return {"cleared": True}

    @app.get(f"{INSPECTION_PREFIX}/config")
    def get_config() -> dict[str, Any]:
        return emulator.config.public()

    @app.post(f"{INSPECTION_PREFIX}/config")
    async def set_config(request: Request) -> Response:
        try:
            config = emulator.configure(**await _json_object(request))
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return JSONResponse(config.public())

    @app.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
    async def api(request: Request) -> Response:
        started = time.monotonic()
        if request.url.path.startswith(f"{INSPECTION_PREFIX}/"):
            return JSONResponse({"error": "unknown inspection endpoint"}, status_code=404)
        answer = emulator.handle(
            ApiRequest(
                method=request.method,
                path=request.url.path,
                query=request.scope.get("query_string", b"").decode("latin-1"),
                content_type=request.headers.get("content-type"),
                body=await request.body(),
                header_access_key=request.headers.get("x-lsq-accesskey"),
                header_secret_key=request.headers.get("x-lsq-secretkey"),
            )
        )
        await _pause(answer.delay, emulator.stopping)
        emulator.finish(answer, time.monotonic() - started)
        if answer.kind == "drop":
            return DroppedResponse()
        if answer.kind == "trickle":
            every = emulator.config.trickle_byte_seconds
            return TrickledResponse(answer.payload, answer.status, answer.content_type, every, emulator.stopping)
        return Response(
            answer.payload, status_code=answer.status, media_type=answer.content_type, headers=answer.headers
        )

    return app
