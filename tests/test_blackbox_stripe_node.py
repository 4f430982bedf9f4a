"""The fake Stripe over real HTTP, checked by stripe-node (the official `stripe` npm package,
tests/node/): sessions, idempotent replays, and Stripe's errors as stripe-node's error types.
`make test` installs it (npm); a missing Node skips, unless CI (.ci/run sets
PAYSIM_REQUIRE_NODE=1) makes that a failure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.blackboxhelpers import fake_stripe_with_receiver, session_params

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "stripe_fidelity.mjs"
NODE = shutil.which("node")

if NODE is None or not (NODE_DIR / "node_modules" / "stripe").is_dir():
    reason = (
        "node is not installed"
        if NODE is None
        else "stripe-node is not installed: run `make test` (npm install in tests/node)"
    )
    if os.environ.get("PAYSIM_REQUIRE_NODE") == "1" or os.environ.get("CI"):
        raise RuntimeError(f"stripe-node fidelity tests must run here: {reason}")
    pytest.skip(reason, allow_module_level=True)


async def node(base_url: str, check: str, stdin: bytes = b"") -> dict[str, Any]:
    assert NODE is not None
    with trio.fail_after(60):
        done = await trio.run_process(
            [NODE, str(SCRIPT), base_url, check],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
        )
    return json.loads(done.stdout)


def test_stripe_node_sessions_idempotency_and_errors() -> None:
    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            out = await node(service.base_url, "sessions")
            created = out["created"]
            assert (created["status"], created["amount_total"]) == ("open", 5000)
            assert out["replayed"] == {"id": created["id"], "header": "true"}
            assert out["retrieved"] == {"id": created["id"], "status": "open"}
            assert out["listed"] == [created["id"]]
            assert out["expired"] == {"id": created["id"], "status": "expired"}
            assert out["events"] == [["checkout.session.expired", created["id"]]]
            assert (out["bad_filter"]["statusCode"], out["bad_filter"]["param"]) == (
                400,
                "delivery_success",
            )
            assert out["expire_again"]["type"] == "StripeInvalidRequestError"
            assert out["expire_again"]["statusCode"] == 400
            assert out["key_reused"]["type"] == "StripeIdempotencyError"
            assert out["missing"]["type"] == "StripeInvalidRequestError"
            assert (out["missing"]["statusCode"], out["missing"]["code"]) == (
                404,
                "resource_missing",
            )
            assert out["unknown_param"]["param"] == "colour"
            assert out["bad_key"]["type"] == "StripeAuthenticationError"
            assert list(service.fake.sessions) == [created["id"]]

            service.fake.faults.rate_limit_per_s = 1.0
            results = (await node(service.base_url, "rate_limit"))["results"]
            assert "StripeRateLimitError" in [r["type"] for r in results]
            assert results[0]["type"] is None  # the bucket starts with one second's worth
            service.fake.faults.rate_limit_per_s = None

            service.fake.faults.error_5xx_probability = 1.0
            error = (await node(service.base_url, "server_error"))["result"]
            assert (error["type"], error["statusCode"]) == ("StripeAPIError", 500)
            service.fake.faults.error_5xx_probability = 0.0

            service.fake.faults.lost_response_probability = 1.0
            lost = (await node(service.base_url, "lost_response"))["result"]
            assert lost["type"] == "StripeConnectionError"
            # executed once, then stripe-node's retry (its own idempotency key) was a replay
            assert len(service.fake.sessions) == 2
            last_two = service.ledger.requests[-2:]
            assert [(r["fault"], r["replayed"]) for r in last_two] == [
                ("lost_response", False),
                ("lost_response", True),
            ]

    trio.run(main)


def test_stripe_node_verifies_the_webhooks_the_fake_sends() -> None:
    """A delivery as it arrived over HTTP passes stripe-node's constructEvent; one byte changed,
    it does not."""

    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, receiver):
            client = service.client()
            session = await trio.to_thread.run_sync(
                lambda: client.v1.checkout.sessions.create(session_params())
            )
            service.fake.expire_now(session.id)
            with trio.fail_after(10):
                while not receiver.raw:
                    await trio.sleep(0.01)
            body, header = receiver.raw[0]
            delivery = {"payload": body.decode(), "header": header, "secret": receiver.secret}
            out = await node(service.base_url, "webhook", json.dumps(delivery).encode())
            assert out["genuine"] == {"type": "checkout.session.expired"}
            assert out["tampered"] == {"error": "StripeSignatureVerificationError"}

    trio.run(main)
