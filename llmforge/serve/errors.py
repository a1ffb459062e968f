"""Every failure as OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, with the right
status; a bug is a 500 naming an error id (the traceback goes to the server's log under it, not to the client)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

log = logging.getLogger("llmforge.serve")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One line from pydantic's errors, naming the field (`messages.0.role`), and that field."""
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "extra_forbidden":
        return f"{field}: not a field this server knows (it would be ignored, so it is refused)", field
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{field}: {message}" if field else message), field


def install_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def _api(_request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, e: RequestValidationError):
        message, field = validation_message(list(e.errors()))
        return JSONResponse(ApiError(400, message, param=field).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_request, e: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        err = ApiError(e.status_code, str(e.detail), code=codes.get(e.status_code))
        return JSONResponse(err.body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(_request, e: Exception):
        err = internal_error("request failed")
        return JSONResponse(err.body(), status_code=500)


def internal_error(what: str) -> ApiError:
    """A 500 for the exception being handled: its traceback goes to the server's log under an id, the client
    gets only that id (an exception's text can hold paths and data that are not the client's business)."""
    ref = uuid.uuid4().hex[:12]
    log.exception("%s [error %s]", what, ref)
    return ApiError(
        500, f"internal error ({what}); the server's log has it as error {ref}", kind="server_error"
    )


def sse(data: Any) -> str:
    """One server-sent event carrying `data` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
