"""Google's JSON error shape, so google-api-python-client's HttpError parses our errors.

    {"error": {"code": 410, "message": "...", "status": "GONE",
               "errors": [{"domain": "calendar", "reason": "fullSyncRequired", "message": "..."}]}}

``HttpError.reason`` is the message and ``HttpError.error_details`` the ``errors`` list.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GoogleError", "error_body"]

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    410: "GONE",
    412: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_DEFAULT_REASON = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    405: "httpMethodNotAllowed",
    409: "conflict",
    410: "deleted",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
_DEFAULT_MESSAGE = {
    400: "Bad Request",
    401: "Invalid Credentials",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Resource has been deleted",
    429: "Rate Limit Exceeded",
    500: "Backend Error",
    503: "Backend Error",
}


class GoogleError(Exception):
    """An API error the sandbox answers with, in Google's shape."""

    def __init__(  # noqa: PLR0913 - the fields of Google's error shape
        self,
        code: int,
        reason: str | None = None,
        message: str | None = None,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
    ) -> None:
        self.code = code
        self.reason = reason or _DEFAULT_REASON.get(code, "unknown")
        self.message = message or _DEFAULT_MESSAGE.get(code, "Error")
        self.domain = domain
        self.location = location
        self.location_type = location_type
        super().__init__(f"{code} {self.reason}: {self.message}")

    def body(self) -> dict[str, Any]:
        return error_body(
            self.code,
            self.reason,
            self.message,
            domain=self.domain,
            location=self.location,
            location_type=self.location_type,
        )


def error_body(  # noqa: PLR0913 - the fields of Google's error shape
    code: int,
    reason: str | None = None,
    message: str | None = None,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
) -> dict[str, Any]:
    reason = reason or _DEFAULT_REASON.get(code, "unknown")
    message = message or _DEFAULT_MESSAGE.get(code, "Error")
    detail: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location:
        detail["location"] = location
        detail["locationType"] = location_type or "parameter"
    return {"error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN"), "errors": [detail]}}


def bad_request(message: str, *, reason: str = "invalid", location: str | None = None) -> GoogleError:
    return GoogleError(400, reason, message, location=location)


def not_found() -> GoogleError:
    return GoogleError(404, "notFound", "Not Found")
