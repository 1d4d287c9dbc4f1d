"""One JSON error shape for every failure, and the request guard that keeps tracebacks in.

Each error names the request (method and path), its request id and, for bad input, the field.
An unexpected exception is logged server-side with the request id and answered with a plain
500 that says nothing about the code. Bodies above a size limit are refused with 413 before
they are parsed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cangtwin.platform.api.models import ErrorDetail, ErrorResponse, FieldError, FileLocation

log = logging.getLogger("cangtwin.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_UNPARSABLE = "There was an error parsing the body"  # FastAPI's words for a body it cannot decode
_CODES = {400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
          405: "method-not-allowed", 409: "conflict", 413: "payload-too-large",
          415: "unsupported-media-type", 422: "invalid-request", 500: "internal-error",
          503: "unavailable"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None,
                 file: FileLocation | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.code = code or _CODES.get(status, "error")
        self.headers = headers
        self.file = file


def request_id(scope: Scope) -> str:
    return scope.get("cangtwin.request_id", "")


def describe(scope: Scope) -> str:
    return f"{scope.get('method', '?')} {scope.get('path', '?')}"


def error_body(scope: Scope, status: int, message: str, *, code: str | None = None,
               field: str | None = None, errors: list[FieldError] | None = None,
               file: FileLocation | None = None) -> dict:
    detail = ErrorDetail(status=status, code=code or _CODES.get(status, "error"),
                         message=f"{describe(scope)}: {message}", request=describe(scope),
                         request_id=request_id(scope), field=field, errors=errors or [], file=file)
    return ErrorResponse(error=detail).model_dump(mode="json")


def _field_path(loc: tuple | list) -> str:
    return ".".join(str(part) for part in loc) if loc else "request"


def _field_error(error: dict) -> FieldError:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":  # loc is ("body", character offset)
        reason = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return FieldError(field="body", message=f"not valid JSON{at}: {reason}".rstrip(": "))
    return FieldError(field=_field_path(loc), message=str(error.get("msg", "invalid")))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return JSONResponse(error_body(request.scope, exc.status, message, code=exc.code, field=exc.field,
                                       file=exc.file), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(e) for e in exc.errors()]
        first = errors[0] if errors else FieldError(field="request", message="invalid request")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse(error_body(request.scope, 422, f"{first.field}: {first.message}{more}",
                                       field=first.field, errors=errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message, field = exc.detail if isinstance(exc.detail, str) else "request refused", None
        if exc.status_code == 400 and message == _UNPARSABLE:  # e.g. bytes that are not UTF-8
            message, field = "body: cannot be decoded as UTF-8 JSON", "body"
        return JSONResponse(error_body(request.scope, exc.status_code, message, field=field),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))


class RequestGuard:
    """Pure ASGI middleware: request ids, a body size limit, and no traceback on a 500."""

    def __init__(self, app: Callable, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope["cangtwin.request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reply(scope, send_with_id, 413, f"body of {declared} bytes exceeds the limit "
                              f"of {self.max_body_bytes} bytes")
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:  # a streamed body with no length given
                    raise StarletteHTTPException(413, f"body exceeds the limit of {self.max_body_bytes} bytes")
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            log.exception("request %s %s failed", rid, describe(scope))
            if not started:
                await self._reply(scope, send_with_id, 500, f"internal error; quote request id {rid}")

    @staticmethod
    async def _reply(scope: Scope, send: Send, status: int, message: str) -> None:
        response = JSONResponse(error_body(scope, status, message), status_code=status)
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
