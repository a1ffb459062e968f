"""The FastAPI app `serve` and `review` run: the OpenAI routes, the playground at /, the review pages at
/review when there is something to review, and one ASGI guard in front of all of them.

The guard (pure ASGI, so it also covers streaming responses and 404s):
- with an API key, every route but the key form and /static wants `Authorization: Bearer KEY` or the
  `llmforge_key` cookie that the form at /login sets (POST, so the key is never in a logged URL); a client
  without either gets 401, a browser asking for a page is sent to the form;
- without a key (loopback only), a request must name a loopback Host (DNS rebinding, see `loopback_host`);
- a body over `max_body_bytes` is refused with 413 before the route reads it, whether the client sent a
  Content-Length or streamed it chunked.
"""

from __future__ import annotations

import hmac
import json
import re
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request

from llmforge.serve.errors import ApiError, install_handlers
from llmforge.serve.models import ModelPool

STATIC = Path(__file__).parent / "static"
KEY_COOKIE = "llmforge_key"


def build_app(pool: ModelPool, *, api_key: str | None, review: Any = None) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from llmforge.serve.openai_routes import router

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.close()

    app = FastAPI(title="llmforge serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install_handlers(app)
    app.include_router(router(pool))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def playground():
        return FileResponse(STATIC / "playground.html")

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request):
        if "key" in request.query_params:
            raise ApiError(400, "send the key in the form's POST body, not in the URL (URLs are logged)",
                           code="key_in_url", param="key")  # fmt: skip
        return FileResponse(STATIC / "login.html")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key, target = form.get("key", [""])[0], form.get("next", ["/"])[0]
        if api_key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise ApiError(401, "wrong or missing key", code="invalid_api_key")
        response = RedirectResponse(local_path(target), status_code=303)
        response.set_cookie(KEY_COOKIE, api_key, httponly=True, samesite="strict")
        return response

    if review is not None:
        from llmforge.serve.review.routes import install

        install(app, review)

    return Guard(app, api_key=api_key, max_body=pool.limits.max_body_bytes)


def local_path(target: str) -> str:
    """`target` when it is a path of this site, else "/": never //host or /\\host (other sites)."""
    return target if target.startswith("/") and target[1:2] not in ("/", "\\") else "/"


class Guard:
    """API key and body-size checks in front of the app (see the module docstring)."""

    def __init__(self, app: Any, *, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key is None and not loopback_host(headers.get("host")):
            await _reply(send, ApiError(403, f"Host {headers.get('host')!r}: a server without a key answers only "
                                        "to 127.0.0.1, localhost or [::1]", code="host_not_allowed"))  # fmt: skip
            return
        path = scope["path"]
        if self.api_key is not None and not _open_path(path) and not self._authorised(headers):
            if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
                await _redirect(send, "/login?" + urlencode({"next": path}))  # a browser: to the key form
            else:
                await _reply(send, ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                            code="invalid_api_key"))  # fmt: skip
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _reply(send, _too_large(self.max_body))
            return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            body = await _read_capped(receive, self.max_body)
            if body is None:
                await _reply(send, _too_large(self.max_body))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        expected = self.api_key.encode()
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), expected):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
            return False
        morsel = cookie.get(KEY_COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), expected)


def _open_path(path: str) -> bool:
    """What a browser without the key may fetch: the key form and the package's own CSS/JS."""
    return path == "/login" or path.startswith("/static/")


def loopback_host(host: str | None) -> bool:
    """A Host header naming this machine's loopback (any port), or none (HTTP/1.0). A keyless server checks
    it so that a web page whose domain has been re-pointed at 127.0.0.1 (DNS rebinding) cannot use it."""
    if host is None:
        return True
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
    return name.lower() in ("localhost", "::1") or bool(re.fullmatch(r"127(\.\d{1,3}){3}", name))


async def _redirect(send: Any, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body over this server's limit of {limit} bytes (serve --max-body)",
                    code="request_too_large")  # fmt: skip


async def _read_capped(receive: Any, limit: int) -> bytes | None:
    """The whole chunked body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Any, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
