"""FakeStripe: a stateful Stripe reached only through the real SDK, over an in-process wire.

It wires the pieces: state (objects and events), the API, the front door (idempotency, rate
limit, 500s), the network (latency, lost requests and responses), the expiry sweeper and the
customer. The engine gets a `stripe.StripeClient` from `client()` and cannot tell it is fake.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.abc
import stripe

from simulator.clock import SimClock
from simulator.fake_stripe import signing
from simulator.fake_stripe.api import ApiRequest, Reply, StripeApi
from simulator.fake_stripe.customer import customer_pay, still_open
from simulator.fake_stripe.expiry import ExpirySweeper
from simulator.fake_stripe.faults import StripeFaults
from simulator.fake_stripe.http_client import SimHTTPClient
from simulator.fake_stripe.objects import CheckoutSession, PaymentIntent, Refund
from simulator.fake_stripe.server import StripeServer
from simulator.fake_stripe.state import API_VERSION, StripeState, Subscriber, no_record
from simulator.fake_stripe.transport import SimNetwork

if TYPE_CHECKING:
    from simulator.fake_stripe.spill import Spill

API_BASE = "https://api.stripe.sim"


class FakeStripe:
    def __init__(
        self,
        clock: SimClock,
        rng: random.Random,
        task_group: anyio.abc.TaskGroup,
        *,
        webhook_secret: str = "whsec_sim",
        faults: StripeFaults | None = None,
        record: Callable[..., Any] | None = None,
        live_mode: bool = False,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.webhook_secret = webhook_secret
        self.faults = faults if faults is not None else StripeFaults()
        self.record: Callable[..., Any] = record or no_record
        self.live_mode = live_mode
        self.api_version = API_VERSION
        self._state = StripeState(clock, live_mode=live_mode, record=self.record)
        self._sweeper = ExpirySweeper(self._state, clock, task_group)
        self._state.on_open = self._sweeper.schedule
        self._state.on_closed = self._sweeper.discard
        self._server = StripeServer(StripeApi(self._state), lambda: self.faults, rng, self.record)
        self._network = SimNetwork(self._server, lambda: self.faults, rng, task_group, self.record)

    # ---- the engine's side

    def client(
        self,
        max_network_retries: int = 2,
        *,
        api_key: str | None = None,
        timeout_s: float | None = 80.0,
    ) -> stripe.StripeClient:
        """A real `stripe.StripeClient` wired to this fake. Each client draws its retry jitter
        from its own rng, derived from the fake's, so clients do not perturb each other."""
        http_client = SimHTTPClient(
            self._network.handle, random.Random(self.rng.getrandbits(64)), timeout_s=timeout_s
        )
        key = api_key or ("sk_live_sim" if self.live_mode else "sk_test_sim")
        return stripe.StripeClient(
            key,
            base_addresses={"api": API_BASE},
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

    async def wire(self, request: ApiRequest) -> Reply:
        """One request as it comes off a real socket (black-box mode): the same wire as the SDK's
        in-process one, latency and network faults included. Raises `transport.ConnectError` or
        `transport.ReadError` where a socket would fail (the server then drops the connection)."""
        return await self._network.handle(request)

    # ---- fixtures: state that existed before the run (not through the API, not recorded as a
    # request): e.g. sessions opened by an earlier release of the engine

    def preload_session(
        self,
        *,
        amount_total: int,
        expires_at: int,
        client_reference_id: str,
        metadata: dict[str, str],
        with_payment_intent: bool,
    ) -> CheckoutSession:
        """An open session; `with_payment_intent` creates its PaymentIntent up front, as Stripe
        API versions before 2022-08-01 did for every payment-mode session."""
        session = self._state.create_session(
            amount_total=amount_total,
            currency="usd",
            expires_at=expires_at,
            metadata=metadata,
            client_reference_id=client_reference_id,
            success_url=None,
            cancel_url=None,
            payment_intent_metadata=dict(metadata),
        )
        if with_payment_intent:
            self._state.intent_for(session)
        return session

    def foreign_session(
        self,
        *,
        amount_total: int,
        currency: str,
        mode: str,
        client_reference_id: str | None,
        metadata: dict[str, str],
        expires_at: int,
    ) -> CheckoutSession:
        """An open session the engine did not create: a Payment Link, the dashboard or other code
        on the same account, naming whatever it likes (the adversary's foreign sessions). The
        customer pays it like any other (`customer_pay`); its events are real and signed."""
        session = self._state.create_session(
            amount_total=amount_total,
            currency=currency,
            expires_at=expires_at,
            metadata=metadata,
            client_reference_id=client_reference_id,
            success_url=None,
            cancel_url=None,
            payment_intent_metadata=dict(metadata),
        )
        session.mode = mode
        return session

    @property
    def executing(self) -> int:
        """Requests Stripe is still executing: until they finish, the world is not quiet."""
        return self._server.executing

    # ---- ledgers, for the checkers and tests

    @property
    def sessions(self) -> dict[str, CheckoutSession]:
        return self._state.sessions

    @property
    def payment_intents(self) -> dict[str, PaymentIntent]:
        return self._state.payment_intents

    @property
    def refunds(self) -> list[Refund]:
        return self._state.refunds

    @property
    def events(self) -> list[dict[str, Any]]:
        return self._state.events

    def paid_session_ids(self) -> set[str]:
        return {s.id for s in self._state.sessions.values() if s.payment_status == "paid"}

    def refunded_payment_intents(self) -> set[str]:
        """Payment intents refunded in full."""
        return {
            pi.id
            for pi in self._state.payment_intents.values()
            if pi.amount_refunded > 0 and pi.amount_refunded >= pi.amount_received
        }

    def session_id_of(self, event: dict[str, Any]) -> str | None:
        """The Checkout Session an event concerns (payment intent events map back to it)."""
        return self._state.session_id_of(event)

    def delivered(self, event_id: str) -> None:
        """The endpoint acknowledged the event: Stripe lists it as delivered from now on."""
        self._state.delivered(event_id)

    # ---- the customer's side

    async def customer_pay(
        self,
        session_id: str,
        flow: str = "card",
        *,
        retry_after_s: float = 20.0,
        settle_after_s: float = 120.0,
        on_submitted: Callable[[], None] | None = None,
    ) -> bool:
        """Pay in the Checkout tab. Flows: card, decline, decline_then_card (second card after
        `retry_after_s`), async_success / async_failure (settles after `settle_after_s`).
        Returns False, doing nothing, when the session is not open. Raises KeyError for an
        unknown session id."""
        return await customer_pay(
            self._state,
            session_id,
            flow,
            retry_after_s=retry_after_s,
            settle_after_s=settle_after_s,
            on_submitted=on_submitted,
        )

    @property
    def checkout_url(self) -> str:
        """Prefix of every new session's `url` (the hosted Checkout page), id appended."""
        return self._state.checkout_url

    @checkout_url.setter
    def checkout_url(self, prefix: str) -> None:
        self._state.checkout_url = prefix

    def session_open(self, session_id: str) -> bool:
        """Whether the customer can still pay `session_id` (one past `expires_at` is expired on
        the spot). Raises KeyError for an unknown session id."""
        return still_open(self._state, self._state.sessions[session_id])

    def expire_now(self, session_id: str) -> bool:
        """The session reaches its `expires_at` now (black-box runs cannot wait 30 minutes for
        an abandoned page): expired as by time, with its event. False if it was not open."""
        session = self._state.sessions[session_id]
        if not still_open(self._state, session):
            return False
        self._state.expire_session(session, reason="expires_at")
        return True

    # ---- webhooks

    def subscribe(self, callback: Subscriber) -> None:
        """`callback(event)` runs synchronously for every event created from now on."""
        self._state.subscribe(callback)

    def sign(
        self, payload: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> str:
        """`Stripe-Signature` header for `payload`, stamped now (virtual) unless told."""
        when = int(self.clock.now()) if timestamp is None else timestamp
        return signing.sign(payload, secret if secret is not None else self.webhook_secret, when)

    def event_payload(self, event: dict[str, Any]) -> bytes:
        return signing.event_payload(event)

    def spill_to(self, spill: Spill) -> None:
        """Keep settled state (sessions, payment intents, events, saved idempotent replies) in
        `spill`, on disk, so a long run's memory does not grow with it. Call before the first
        request; objects read back are equal copies, not the same objects."""
        self._state.spill_to(spill)
        self._server.idempotency_keys.spill_to(spill.idempotency)

    def stop(self) -> None:
        """Stop background work (the expiry sweeper), e.g. before closing the task group."""
        self._sweeper.stop()
