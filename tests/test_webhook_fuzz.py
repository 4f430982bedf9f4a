"""Fuzzing `handle_webhook` of every built-in engine that claims safety (Hypothesis).

Each example: a pending purchase whose customer has paid, then a sequence of hostile inputs
(random bytes, garbled and retyped copies of the real event, doctored signature headers, stale
and future timestamps, tampered bodies, each signed or not), then the genuine delivery.
Properties: no exception escapes; a refused input (any non-2xx) changes no document; an
acknowledged hostile input never completes the purchase from anything but its own paid
session; the genuine event still completes it, once, after any hostile sequence.

CI runs 1,000 examples (derandomized); `make soak` (HYPOTHESIS_PROFILE=nightly) runs 10,000.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.registry import BUILTIN, CLAIMS_SAFETY
from reference_impl.schema import program_doc
from reference_impl.store import open_database
from simulator.fake_stripe import signing
from simulator.services import RecordingFulfilment
from tests.enginehelpers import make_env, run_virtual, world

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 0)) or (
    10_000 if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else 1_000
)
SECRET = "whsec_sim"
USER, PROG = "user_1", "prog_1"

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["cs_sim_000001", "pur_000001", "pi_sim_000001", "paid", "usd", "payment"]),
    st.just({"$gt": ""}),
    st.just({"$ne": None}),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = (
    "id",
    "client_reference_id",
    "payment_intent",
    "payment_status",
    "status",
    "amount_total",
    "currency",
    "mode",
    "metadata",
    "metadata.purchase_id",
)


@st.composite
def bodies(draw: Any, event: dict[str, Any]) -> bytes:
    """A hostile body built from the real event: retyped fields, another type, or junk."""
    kind = draw(st.sampled_from(("retyped", "retyped", "event_type", "bytes", "json", "nested")))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "nested":
        depth = draw(st.integers(min_value=1, max_value=3000))
        return ('{"data": {"object": ' * 1 + "[" * depth + "]" * depth + "}}").encode()
    body = copy.deepcopy(event)
    if kind == "event_type":
        body["type"] = draw(
            st.sampled_from(
                (
                    "checkout.session.completed",
                    "checkout.session.async_payment_succeeded",
                    "checkout.session.expired",
                    "checkout.session.async_payment_failed",
                    "payment_intent.succeeded",
                    "customer.created",
                )
            )
        )
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(FIELDS)).split(".")
        target = body["data"]["object"]
        for name in path[:-1]:
            if not isinstance(target.get(name), dict):
                target[name] = {}
            target = target[name]
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(JSON)
    return json.dumps(body).encode()


@st.composite
def headers(draw: Any, payload: bytes, now: int) -> str | None:
    """A `Stripe-Signature`: valid, stale, future, doctored, or absent."""
    t = draw(st.sampled_from((now, now - 301, now - 86400, now + 600, 0, -1, 10**12, 2**63)))
    secret = draw(st.sampled_from((SECRET, SECRET, "whsec_other", "")))
    good = signing.sign(payload, secret, t) if secret else f"t={t}"
    kind = draw(st.sampled_from(("signed", "signed", "parts", "text", "none")))
    if kind == "signed":
        return good
    if kind == "none":
        return None
    if kind == "text":
        return draw(st.text(max_size=60))
    parts = [good, f"t={now}", f"t={t}", "v1=", "v0=" + good[-64:], f"t={t}=x", "t= 1", "v1"]
    chosen = draw(st.lists(st.sampled_from(parts), min_size=1, max_size=4))
    return draw(st.sampled_from((",", ", ", ";", " ,"))).join(chosen)


class _NoStripe:
    """Stripe, unreachable: a safe engine's webhook needs no Stripe call for these inputs, and
    if one tries, it must answer 5xx and change nothing, like any handler error."""

    def __getattr__(self, name: str) -> Any:
        raise stripe.APIConnectionError("no Stripe in the fuzz test")


@functools.cache
def _paid_purchase(
    engine: str,
) -> tuple[tuple[tuple[str, dict[str, Any]], ...], dict[str, Any], str]:
    """The engine's own store after a create whose customer paid, and the genuine event.

    Built once per engine (the fake Stripe, the create and the payment cost most of an
    example); each example starts from a copy of these documents in a fresh store."""
    factory = BUILTIN[engine]()
    out: dict[str, Any] = {}

    async def build() -> None:
        async with world(factory, programs=[program_doc(PROG, class_rep_limit=2)]) as w:
            result = await w.engine.create_purchase(USER, PROG, class_rep=True)
            assert await w.fake.customer_pay(result.session_id)
            [out["event"]] = w.events("checkout.session.completed")
            out["session_id"] = result.session_id
            db = w.env.store.sync
            out["docs"] = tuple(
                (name, doc) for name in db.list_collection_names() for doc in db[name].find({})
            )

    run_virtual(build)
    return out["docs"], out["event"], out["session_id"]


def _stripe_says(payload: bytes, header: str | None, status: str) -> bool:
    """The body is correctly signed and says, in its type and its object alike, that the
    purchase's session ended so: the engine may believe it (only Stripe has the secret)."""
    try:
        stripe.WebhookSignature.verify_header(payload.decode(), header, SECRET)
    except (stripe.SignatureVerificationError, ValueError):
        return False
    body = json.loads(payload)
    obj = body["data"]["object"]
    if status == "expired":
        return body["type"] == "checkout.session.expired" and obj.get("status") == "expired"
    failed = body["type"] == "checkout.session.async_payment_failed"
    return failed and obj.get("payment_status") != "paid"


def _documents(db: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: list(db[name].find({})) for name in sorted(db.list_collection_names())}


def _without_dead_letters(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {k: v for k, v in docs.items() if k != "webhook_dead_letters"}


@pytest.mark.parametrize("engine", sorted(CLAIMS_SAFETY))
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_hostile_webhooks_change_nothing_and_the_genuine_one_still_works(
    engine: str, data: st.DataObject
) -> None:
    docs, event, session_id = _paid_purchase(engine)
    factory = BUILTIN[engine]()

    async def main() -> None:
        store = open_database()
        for name, doc in docs:
            await store[name].insert_one(copy.deepcopy(doc))
        fulfilment = RecordingFulfilment()
        env = await make_env(stripe_client=_NoStripe(), store=store, fulfilment=fulfilment)  # type: ignore[arg-type]
        engine_ = factory(env)
        db = store.sync
        now = int(env.clock.now())
        for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="n")):
            payload = data.draw(bodies(event), label="body")
            header = data.draw(headers(payload, now), label="header")
            before = _documents(db)
            status = await engine_.handle_webhook(payload, header)
            assert isinstance(status, int) and 200 <= status < 600
            after = _documents(db)
            if status >= 300:
                assert after == before, "a refused input changed a document"
                continue
            [p] = after["purchases"]
            assert p["stripe_session_id"] == session_id
            if p["status"] == "completed":  # only from the genuine session, really paid
                assert [g.session_id for g in fulfilment.grants] == [session_id]
            elif p["status"] != "pending":  # Stripe's own word (signed, consistent) only
                assert _stripe_says(payload, header, p["status"]), (p["status"], payload)
            elif _without_dead_letters(after) != _without_dead_letters(before):
                raise AssertionError("an acknowledged hostile input changed a document")
        genuine = signing.event_payload(event)
        assert await engine_.handle_webhook(genuine, signing.sign(genuine, SECRET, now)) == 200
        [p] = list(db["purchases"].find({}))
        assert p["status"] == "completed" and p["stripe_session_id"] == session_id
        assert [g.session_id for g in fulfilment.grants] == [session_id]

    run_virtual(main)
