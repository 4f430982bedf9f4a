"""What an engine may raise to a client, mapped to the HTTP status a real API would send."""

from __future__ import annotations


class PurchaseError(Exception):
    """Base of every client-visible purchase failure."""

    http_status = 400
    code = "purchase_error"


class LimitReached(PurchaseError):
    http_status = 409
    code = "limit_reached"


class AlreadyPurchased(PurchaseError):
    http_status = 409
    code = "already_purchased"


class Busy(PurchaseError):
    """A lock wait timed out or the lock service is unreachable (HTTP 503): safe to retry."""

    http_status = 503
    code = "busy"


class UpstreamError(PurchaseError):
    """Stripe failed. `outcome_known` is False when the request may have landed (timeout)."""

    http_status = 502
    code = "upstream_error"

    def __init__(self, message: str, *, outcome_known: bool = True) -> None:
        super().__init__(message)
        self.outcome_known = outcome_known


class NotFound(PurchaseError):
    http_status = 404
    code = "not_found"


class NotCancellable(PurchaseError):
    http_status = 409
    code = "not_cancellable"
