"""The engine boundary of DESIGN.md: what an engine gets (`EngineEnv`) and what it offers (`Engine`).

An engine does all I/O through these ports so that the simulator controls time, failures and
interleaving. Checkers, mutants and users' engines depend on this module: change it with care.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import stripe

    from reference_impl.locks import LockService
    from reference_impl.store import AsyncDatabase


@dataclass(frozen=True)
class PurchaseResult:
    purchase_id: str
    session_id: str
    checkout_url: str
    reused: bool = False


@dataclass(frozen=True)
class EngineConfig:
    """Timeouts and policies, in seconds. Defaults are the seed document's own values."""

    purchase_lock_timeout: float = 10.0
    webhook_lock_timeout: float = 15.0
    stripe_timeout: float = 10.0
    stripe_retries: int = 2  # the reference engine's own retries of Checkout Session creation
    webhook_tolerance: float = 300.0
    session_ttl: float = 24 * 3600.0
    # how long an intent record (Stripe outcome unknown) or orphan seat may wait before
    # `reconcile` resolves it; longer than any request can legitimately take
    reconcile_grace: float = 15 * 60.0
    # how long `reconcile` waits for Stripe: nobody waits on a sweep, so as long as
    # stripe-python's own client would (a Stripe slower than `stripe_timeout` for good would
    # otherwise leave an intent whose outcome is unknown unresolved for ever)
    reconcile_stripe_timeout: float = 80.0
    currency: str = "usd"
    success_url: str = "https://example.test/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "https://example.test/cancel"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch; virtual under simulation."""


class IdSource(Protocol):
    def new_id(self, prefix: str) -> str:
        """A fresh unique id; deterministic under simulation (engines must not use uuid/ObjectId)."""


class Fulfilment(Protocol):
    async def grant(
        self,
        *,
        purchase_id: str,
        user_id: str,
        program_id: str,
        session_id: str,
        idempotency_key: str | None = None,
    ) -> None:
        """Give the user access to the program. Without a key each call is one real grant; with
        one the provider grants once per key, so a grant that may not have happened (a crash
        after the purchase was completed) can be made again safely."""


class EmailError(Exception):
    pass


class Email(Protocol):
    async def send_receipt(self, *, purchase_id: str, user_id: str, idempotency_key: str) -> None:
        """Send a receipt; the provider delivers once per idempotency key. Raises EmailError."""


@dataclass(frozen=True)
class StripeClientSettings:
    """How an engine's Stripe SDK client is built: its per-request timeout and automatic retries.

    An engine ported from another language declares its own SDK's defaults (the factory attribute
    `stripe_client_settings`); without one the engine gets stripe-python's (80 s, 2 retries). A
    scenario's `stripe_max_network_retries`, when set, overrides the retries for every engine.
    """

    timeout_s: float = 80.0
    max_network_retries: int = 2


@dataclass
class EngineEnv:
    store: AsyncDatabase
    locks: LockService
    stripe: stripe.StripeClient
    webhook_secret: str
    fulfilment: Fulfilment
    email: Email
    clock: Clock
    ids: IdSource
    config: EngineConfig = field(default_factory=EngineConfig)
    instance: str = "i0"


@runtime_checkable
class Engine(Protocol):
    async def create_purchase(
        self, user_id: str, program_id: str, class_rep: bool
    ) -> PurchaseResult:
        """Raises LimitReached, AlreadyPurchased, Busy, UpstreamError, NotFound."""

    async def handle_webhook(self, payload: bytes, signature_header: str | None) -> int:
        """Returns the HTTP status code Stripe sees."""

    async def cancel_purchase(self, user_id: str, purchase_id: str) -> None:
        """Raises NotFound or NotCancellable."""

    async def reconcile(self) -> None:
        """Periodic sweeper; may do nothing."""


@runtime_checkable
class SuccessRedirect(Protocol):
    """Optional: an engine that also fulfils from the success page (the redirect-vs-webhook race)."""

    async def handle_success_redirect(self, session_id: str) -> None: ...


@runtime_checkable
class PendingPurchasesPage(Protocol):
    """Optional: an engine whose "my pending purchases" page changes state when a user opens it
    (the seed's cleans up). The workload's `pending_page` customers call it; elsewhere a no-op."""

    async def list_pending_purchases(self, user_id: str) -> list[str]:
        """The ids of the user's pending purchases the page shows."""
        ...


EngineFactory = Callable[[EngineEnv], Engine]
