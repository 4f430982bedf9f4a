"""Stripe-shaped API errors: `{"error": {"type", "code", "message", "param"}}` with the status
stripe-python maps to its exception classes (400/404 -> InvalidRequestError or IdempotencyError,
429 -> RateLimitError, 409 and 5xx -> APIError)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error response. `stored` says whether an idempotency key keeps it: Stripe saves the
    outcome of a request that started executing, not one rejected by validation or a conflict."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.code = code
        self.param = param
        self.stored = stored
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def invalid_param(message: str, param: str, code: str = "parameter_invalid") -> ApiError:
    """A validation failure: nothing executed, so an idempotency key does not keep it."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param, stored=False)


def invalid_request(message: str, *, code: str | None = None, param: str | None = None) -> ApiError:
    """The request was valid but the object's state refuses it (an executed outcome)."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param)


def no_such(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> ApiError:
    return ApiError(
        status,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def rate_limited() -> ApiError:
    return ApiError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        stored=False,
    )


def idempotency_mismatch() -> ApiError:
    return ApiError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with. Try using a key other than the one used on the original request.",
        stored=False,
    )


def idempotency_key_in_use() -> ApiError:
    return ApiError(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through). "
        "Please try again later.",
        code="idempotency_key_in_use",
        stored=False,
        headers={"Stripe-Should-Retry": "true"},
    )


def server_error(status: int = 500) -> ApiError:
    return ApiError(status, "api_error", "An unknown error occurred. (simulated)")
