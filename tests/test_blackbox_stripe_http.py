"""The fake Stripe over real HTTP, checked by a client no one here wrote: stripe-python with its
default HTTP client (requests), pointed at the server by `base_addresses`. Webhooks arrive at a
receiver that verifies `Stripe-Signature` with the SDK, as a service does."""

from __future__ import annotations

import json
import random
from urllib.parse import urlencode

import httpx
import pytest
import stripe
import trio

from simulator.clock import SimClock
from simulator.fake_stripe import FakeStripe
from simulator.fake_stripe.api import ApiRequest
from simulator.fake_stripe.forms import parse_form
from simulator.fake_stripe.state import CHECKOUT_URL
from simulator.scenario_file import scenario_from_dict
from tests.blackboxhelpers import (
    Receiver,
    fake_stripe_with_receiver,
    in_thread,
    listening,
    session_params,
)


def test_sessions_create_retrieve_list_expire() -> None:
    async def main() -> str:
        async with fake_stripe_with_receiver() as (service, receiver):
            client = service.client()
            created = await in_thread(client.v1.checkout.sessions.create, session_params())
            assert (created.status, created.amount_total, created.currency) == ("open", 5000, "usd")
            assert created.metadata["purchase_id"] == "pur_1"
            again = await in_thread(client.v1.checkout.sessions.retrieve, created.id)
            assert again.id == created.id and again.status == "open"
            listed = await in_thread(client.v1.checkout.sessions.list, {"limit": 5})
            assert [s.id for s in listed.data] == [created.id]
            expired = await in_thread(client.v1.checkout.sessions.expire, created.id)
            assert expired.status == "expired" and expired.url is None
            with pytest.raises(stripe.InvalidRequestError) as err:
                await in_thread(client.v1.checkout.sessions.expire, created.id)
            assert 'This Checkout Session has a status of "expired"' in err.value.user_message
            assert err.value.http_status == 400
            with trio.fail_after(5):
                while "checkout.session.expired" not in receiver.types():
                    await trio.sleep(0.01)
            assert receiver.bad_signatures == 0
            return service.base_url

    base_url = trio.run(main)
    assert not listening(base_url)


def test_idempotent_replay_and_key_reuse_with_other_params() -> None:
    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            client = service.client()
            key = {"idempotency_key": "order-42"}
            first = await in_thread(client.v1.checkout.sessions.create, session_params(), key)
            second = await in_thread(client.v1.checkout.sessions.create, session_params(), key)
            assert second.id == first.id
            assert second.last_response.headers.get("Idempotent-Replayed") == "true"
            with pytest.raises(stripe.IdempotencyError, match="same parameters"):
                await in_thread(
                    client.v1.checkout.sessions.create,
                    session_params(client_reference_id="someone_else"),
                    key,
                )
            assert list(service.fake.sessions) == [first.id]
            replayed = [r["replayed"] for r in service.ledger.requests]
            assert replayed == [False, True, False]

    trio.run(main)


def test_errors_come_out_as_the_sdk_exception_types() -> None:
    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            client = service.client(max_network_retries=0)
            with pytest.raises(stripe.InvalidRequestError) as missing:
                await in_thread(client.v1.checkout.sessions.retrieve, "cs_nope")
            assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
            with pytest.raises(stripe.InvalidRequestError) as unknown:
                await in_thread(client.v1.checkout.sessions.create, session_params(colour="red"))
            assert unknown.value.param == "colour" and "unknown parameter" in str(unknown.value)
            with pytest.raises(stripe.AuthenticationError, match="Invalid API Key"):
                bad_key = stripe.StripeClient("pk_test_x", base_addresses={"api": service.base_url})
                await in_thread(bad_key.v1.checkout.sessions.retrieve, "cs_nope")

            service.fake.faults.error_5xx_probability = 1.0
            with pytest.raises(stripe.APIError) as five_hundred:
                await in_thread(client.v1.checkout.sessions.retrieve, "cs_nope")
            assert five_hundred.value.http_status == 500
            service.fake.faults.error_5xx_probability = 0.0

            service.fake.faults.rate_limit_per_s = 1.0
            with pytest.raises(stripe.RateLimitError):
                for _ in range(3):
                    await in_thread(client.v1.checkout.sessions.list)
            service.fake.faults.rate_limit_per_s = None

            async with httpx.AsyncClient() as raw:  # JSON is not what Stripe reads
                response = await raw.post(
                    service.base_url + "/v1/checkout/sessions",
                    json={"mode": "payment"},
                    headers={"Authorization": "Bearer sk_test_x"},
                )
            assert response.status_code == 400
            assert "form-encoded" in response.json()["error"]["message"]

    trio.run(main)


def test_a_lost_response_is_a_connection_error_and_the_sdk_retry_replays_it() -> None:
    """Stripe executed the request, the connection broke: the SDK sees APIConnectionError,
    retries with its own idempotency key, and the retries are replays (one session)."""

    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            service.fake.faults.lost_response_probability = 1.0
            client = service.client(max_network_retries=1)
            with pytest.raises(stripe.APIConnectionError):
                await in_thread(client.v1.checkout.sessions.create, session_params())
            assert len(service.fake.sessions) == 1
            requests = service.ledger.requests
            assert [(r["fault"], r["replayed"]) for r in requests] == [
                ("lost_response", False),
                ("lost_response", True),
            ]
            service.fake.faults.lost_response_probability = 0.0
            service.fake.faults.connection_error_probability = 1.0
            with pytest.raises(stripe.APIConnectionError):
                no_retry = service.client(max_network_retries=0)
                await in_thread(no_retry.v1.checkout.sessions.create, session_params())
            assert len(service.fake.sessions) == 1  # never reached Stripe

    trio.run(main)


async def checkout(service, session_id: str, **params: object) -> httpx.Response:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as raw:
        return await raw.post(f"{service.base_url}/_paysim/checkout/{session_id}", data=params)


async def until(condition, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.01)


def test_customer_page_payments_refunds_and_signed_webhooks() -> None:
    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, receiver):
            client = service.client()
            create = client.v1.checkout.sessions.create
            paid = await in_thread(create, session_params())
            response = await checkout(service, paid.id, action="pay_card")
            assert response.status_code == 200
            body = response.json()
            assert (body["session"]["status"], body["session"]["payment_status"]) == (
                "complete",
                "paid",
            )
            assert body["payment_intent"]["status"] == "succeeded"
            assert (await checkout(service, paid.id, action="pay_card")).status_code == 409

            declined = await in_thread(create, session_params())
            body = (await checkout(service, declined.id, action="decline")).json()
            assert body["session"]["status"] == "open"
            assert body["payment_intent"]["last_payment_error"]["code"] == "card_declined"

            retried = await in_thread(create, session_params())
            await checkout(service, retried.id, action="decline_then_pay", retry_after_s=0.05)
            debit = await in_thread(create, session_params())
            body = (
                await checkout(service, debit.id, action="bank_debit", settle_after_s=0.05)
            ).json()
            assert (body["session"]["status"], body["session"]["payment_status"]) == (
                "complete",
                "unpaid",
            )
            gone = await in_thread(create, session_params())
            assert (await checkout(service, gone.id, action="abandon")).status_code == 200
            assert service.fake.sessions[gone.id].status == "open"
            expired = (await checkout(service, gone.id, action="expire")).json()
            assert expired["session"]["status"] == "expired"

            assert (await checkout(service, paid.id, action="dance")).status_code == 400
            assert (await checkout(service, "cs_nope", action="pay_card")).status_code == 404
            bad = await checkout(service, debit.id, action="bank_debit", settle_after_s=-1)
            assert bad.status_code == 400

            paid = await in_thread(client.v1.checkout.sessions.retrieve, paid.id)
            intent = await in_thread(client.v1.payment_intents.retrieve, paid.payment_intent)
            assert intent.status == "succeeded"
            charges = await in_thread(
                client.v1.charges.list, {"payment_intent": paid.payment_intent}
            )
            (charge,) = charges.data
            assert (charge.status, charge.paid, charge.amount_captured) == ("succeeded", True, 5000)
            assert (await in_thread(client.v1.charges.retrieve, charge.id)).payment_intent == (
                paid.payment_intent
            )
            refund = await in_thread(client.v1.refunds.create, {"charge": charge.id})
            assert (refund.amount, refund.status) == (5000, "succeeded")
            with pytest.raises(stripe.InvalidRequestError) as twice:
                await in_thread(client.v1.refunds.create, {"payment_intent": paid.payment_intent})
            assert twice.value.code == "charge_already_refunded"
            refunded = await in_thread(client.v1.charges.retrieve, charge.id)
            assert (refunded.refunded, refunded.amount_refunded) == (True, 5000)
            declined = await in_thread(client.v1.checkout.sessions.retrieve, declined.id)
            failed = await in_thread(
                client.v1.charges.list, {"payment_intent": declined.payment_intent}
            )
            assert [(c.status, c.failure_code) for c in failed.data] == [
                ("failed", "card_declined")
            ]
            with pytest.raises(stripe.InvalidRequestError) as no_charge:
                await in_thread(client.v1.charges.retrieve, "ch_nope")
            assert no_charge.value.http_status == 404

            expected = {
                ("checkout.session.completed", paid.id),
                ("payment_intent.payment_failed", declined.id),
                ("checkout.session.completed", retried.id),
                ("checkout.session.async_payment_succeeded", debit.id),
                ("checkout.session.expired", gone.id),
            }

            def arrived() -> set[tuple[str, str]]:
                return {(e["type"], service.fake.session_id_of(e)) for e in receiver.events}

            await until(lambda: expected <= arrived())
            assert receiver.bad_signatures == 0
            async with httpx.AsyncClient() as raw:
                ledger = (await raw.get(service.base_url + "/_paysim/ledger")).json()
            assert len(ledger["sessions"]) == 5 and len(ledger["refunds"]) == 1
            for entry in ledger["events"]:
                assert entry["outcome"] == "acknowledged"
                assert [a["status"] for a in entry["deliveries"]] == [200]
            # every event delivered: none is listed as undelivered, all as delivered
            listed = await in_thread(client.v1.events.list, {"delivery_success": False})
            assert listed.data == [] and not listed.has_more
            listed = await in_thread(client.v1.events.list, {"delivery_success": True, "limit": 100})
            assert [e.id for e in listed.data] == [e["id"] for e in service.fake.events][::-1]
            assert {e.pending_webhooks for e in listed.data} == {0}

    trio.run(main)


def test_webhook_retries_follow_the_compressed_schedule() -> None:
    """Test mode retries first after 15 min; compressed 9,000 times, after about 0.1 s."""

    async def main() -> None:
        receiver = Receiver(status=lambda event, n: 500 if n == 1 else 200)
        async with fake_stripe_with_receiver(receiver, retry_compression=9000.0) as (service, _):
            session = await in_thread(
                service.client().v1.checkout.sessions.create, session_params()
            )
            await checkout(service, session.id, action="expire")
            event = service.fake.events[-1]
            await until(lambda: service.ledger.outcome(event["id"]) == "acknowledged")
            attempts = service.ledger.deliveries(event["id"])
            assert [a["status"] for a in attempts] == [500, 200]
            gap = attempts[1]["at"] - attempts[0]["at"]
            assert 0.09 <= gap < 0.09 + 1.0, gap  # 900 s / 9000 with 10 % jitter, plus slack

    trio.run(main)


def test_scenario_faults_duplicate_and_fail_deliveries() -> None:
    scenario = scenario_from_dict(
        {
            "stripe_latency_s": 0,
            "webhooks": {"mode": "test"},
            "faults": [
                {"kind": "webhook_duplicates", "probability": 1},
                {"kind": "webhook_failures", "probability": 0.5},
            ],
        }
    )

    async def main() -> None:
        async with fake_stripe_with_receiver(scenario=scenario, retry_compression=90000.0) as (
            service,
            receiver,
        ):
            client = service.client()
            for _ in range(4):
                session = await in_thread(client.v1.checkout.sessions.create, session_params())
                await checkout(service, session.id, action="expire")
            ids = [e["id"] for e in service.fake.events]
            await until(lambda: all(service.ledger.outcome(i) for i in ids))
            await until(lambda: service.delivery is not None and service.delivery.idle())
            assert service.delivery is not None
            assert service.delivery.stats.duplicates_sent == len(ids)
            for event_id in ids:
                assert len(service.ledger.deliveries(event_id)) >= 2
            assert any(f["type"] == "fault.webhook_failure" for f in service.ledger.faults)
            statuses = {a["status"] for i in ids for a in service.ledger.deliveries(i)}
            assert statuses == {200, 500}

    trio.run(main)


def test_hostile_requests_change_nothing_and_get_stripe_shaped_errors() -> None:
    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _), httpx.AsyncClient() as raw:
            api = service.base_url + "/v1/checkout/sessions"
            key = {"Authorization": "Bearer sk_test_x"}
            form = {**key, "Content-Type": "application/x-www-form-urlencoded"}
            huge = await raw.post(api, content=b"mode=payment&x=" + b"a" * (1 << 20), headers=form)
            assert huge.status_code == 413 and huge.json()["error"]["type"]
            binary = await raw.post(api, content=b"mode=\xff\xfe", headers=form)
            assert binary.status_code == 400
            for auth in ("Bearer", "Basic !!!", "Token sk_test_x", "Bearer " + "sk_test_" * 40):
                denied = await raw.get(api, headers={"Authorization": auth})
                assert denied.status_code == 401, auth
                assert denied.json()["error"]["type"] == "invalid_request_error"
            assert (await raw.get(api, auth=("sk_test_basic", ""))).status_code == 200
            nowhere = await raw.get(service.base_url + "/v2/../etc/passwd", headers=key)
            assert nowhere.status_code == 404 and "Unrecognized request URL" in nowhere.text
            assert not service.fake.sessions

            session = await in_thread(
                service.client().v1.checkout.sessions.create, session_params()
            )
            page = await raw.get(session.url)  # the session's url is the hosted page
            assert page.status_code == 200 and page.json()["session"]["id"] == session.id
            assert "pay_card" in page.json()["actions"]
            for body in (b"[1, 2]", b"{" * 5000, b"\xff"):
                refused = await raw.post(
                    session.url, content=body, headers={"Content-Type": "application/json"}
                )
                assert refused.status_code == 400, body[:10]
            assert service.fake.sessions[session.id].status == "open"
            assert len(service.fake.events) == 0

    trio.run(main)


def test_console_lines_name_what_happened() -> None:
    from simulator.blackbox.console import line_for, printer

    lost = {"method": "POST", "path": "/v1/refunds", "status": 200, "fault": "lost_response"}
    assert line_for("stripe.request", {**lost, "replayed": True}) == (
        "api      POST /v1/refunds -> 200 (replayed) [fault: lost_response]"
    )
    answer = {"event_id": "evt_1", "attempt": 2, "status": None, "error": "ConnectError"}
    assert line_for("webhook.response", answer) == "webhook  evt_1 attempt 2 -> ConnectError"
    assert line_for("lock.acquired", {}) is None
    lines: list[str] = []
    printer(lines.append)("webhook.given_up", event_id="evt_1", attempts=4)
    assert len(lines) == 1 and lines[0].endswith("webhook  evt_1 given up after 4 attempt(s)")


def test_a_key_in_use_by_a_request_still_running_gets_409() -> None:
    """Two requests under one idempotency key at once over real sockets: the second gets
    Stripe's 409 idempotency_key_in_use (APIError in stripe-python), the first its session."""

    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            service.fake.faults.processing_s = 1.0  # a wide window, even on a loaded machine
            client = service.client(max_network_retries=0)
            outcomes: list[object] = []

            async def create(delay: float) -> None:
                await trio.sleep(delay)
                try:
                    session = await in_thread(
                        client.v1.checkout.sessions.create,
                        session_params(),
                        {"idempotency_key": "k"},
                    )
                    outcomes.append(session.id)
                except stripe.APIError as exc:
                    outcomes.append((exc.http_status, (exc.json_body or {})["error"]["code"]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, 0.0)
                nursery.start_soon(create, 0.1)
            assert sorted(outcomes, key=str) == sorted(
                [(409, "idempotency_key_in_use"), *service.fake.sessions], key=str
            )
            assert len(service.fake.sessions) == 1

    trio.run(main)


def test_the_expiry_sweeper_runs_on_the_wall_clock() -> None:
    """The code that expires sessions in virtual time in simulation does it in real seconds
    here: the fake reads time only from its clock port and the event loop."""

    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, receiver):
            expires_at = int(service.clock.now()) + 2
            session = service.fake.preload_session(
                amount_total=100,
                expires_at=expires_at,
                client_reference_id="pur_wall",
                metadata={},
                with_payment_intent=False,
            )
            await until(lambda: "checkout.session.expired" in receiver.types(), timeout_s=10)
            assert service.fake.sessions[session.id].status == "expired"
            assert service.clock.now() >= expires_at - 0.01

    trio.run(main)


def test_a_body_cut_short_is_not_executed() -> None:
    """The client sends a valid form body, promises more and leaves: what arrived would parse
    and create a session, so it must not be executed."""
    body = urlencode(
        {
            "mode": "payment",
            "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "100",
            "line_items[0][price_data][product_data][name]": "p",
            "line_items[0][quantity]": "1",
        }
    ).encode()

    async def main() -> None:
        async with fake_stripe_with_receiver() as (service, _):
            host, port = service.base_url.removeprefix("http://").split(":")
            request = (
                b"POST /v1/checkout/sessions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk_test_x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(body) + 20).encode() + b"\r\n\r\n" + body
            )
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(request)
            await stream.send_eof()
            with trio.fail_after(5):  # the server refuses the cut request (h11: 400) and closes
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 400")
            await stream.aclose()
            complete = request.replace(str(len(body) + 20).encode(), str(len(body)).encode())
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(complete)
            with trio.fail_after(5):
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 200")
            await stream.aclose()
            assert len(service.fake.sessions) == 1  # the complete one only

    trio.run(main)


def test_scenario_stripe_faults_follow_their_schedule_in_wall_clock_seconds() -> None:
    scenario = scenario_from_dict(
        {
            "stripe_latency_s": 0,
            "faults": [{"kind": "stripe_errors", "probability": 1, "start": 0, "end": 0.5}],
        }
    )

    async def main() -> None:
        async with fake_stripe_with_receiver(scenario=scenario) as (service, _):
            client = service.client(max_network_retries=0)
            with pytest.raises(stripe.APIError) as during:
                await in_thread(client.v1.checkout.sessions.create, session_params())
            assert during.value.http_status == 500
            await until(lambda: service.clock.elapsed() > 0.6)
            session = await in_thread(client.v1.checkout.sessions.create, session_params())
            assert list(service.fake.sessions) == [session.id]  # the 500 executed nothing
            kinds = [(f["type"], f.get("kind")) for f in service.ledger.faults]
            assert kinds == [("fault.start", "stripe_errors"), ("fault.end", "stripe_errors")]

    trio.run(main)


SESSION_FORM = {
    "mode": "payment",
    "line_items[0][price_data][currency]": "usd",
    "line_items[0][price_data][unit_amount]": "700",
    "line_items[0][price_data][product_data][name]": "p",
    "line_items[0][quantity]": "3",
    "metadata[purchase_id]": "pur_9",
}
PARITY_CALLS: list[tuple[str, str, dict[str, str], str | None]] = [
    ("POST", "/v1/checkout/sessions", SESSION_FORM, "key-1"),
    ("POST", "/v1/checkout/sessions", SESSION_FORM, "key-1"),
    ("POST", "/v1/checkout/sessions", {**SESSION_FORM, "client_reference_id": "x"}, "key-1"),
    ("POST", "/v1/checkout/sessions", {**SESSION_FORM, "colour": "red"}, None),
    ("POST", "/v1/checkout/sessions", {"mode": "subscription"}, None),
    ("GET", "/v1/checkout/sessions/cs_sim_000001", {"expand[]": "payment_intent"}, None),
    ("GET", "/v1/checkout/sessions", {"limit": "2"}, None),
    ("GET", "/v1/checkout/sessions", {"limit": "500"}, None),
    ("POST", "/v1/checkout/sessions/cs_sim_000001/expire", {}, None),
    ("POST", "/v1/checkout/sessions/cs_sim_000001/expire", {}, None),
    ("GET", "/v1/checkout/sessions/cs_nope", {}, None),
    ("POST", "/v1/refunds", {"payment_intent": "pi_nope"}, None),
    ("GET", "/v1/charges/ch_nope", {}, None),
    ("GET", "/v1/events/evt_sim_000001", {}, None),
    ("GET", "/v1/events", {"type": "checkout.session.*", "limit": "5"}, None),
    ("GET", "/v1/events", {"delivery_success": "maybe"}, None),
    ("DELETE", "/v1/checkout/sessions/cs_sim_000001", {}, None),
]


_UNCOMPARED = ("created", "expires_at", "pending_webhooks")


def _comparable(status: int, body: bytes, replayed: str | None) -> tuple[int, object, str | None]:
    """A reply without what differs by clock alone (timestamps) or by whether an endpoint
    took the event yet (`pending_webhooks`: over HTTP a receiver answers; in process none)."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _UNCOMPARED}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return status, strip(json.loads(body)), replayed


def test_over_http_the_api_answers_exactly_as_in_simulation() -> None:
    """The same calls through the in-process wire (what the SDK uses in simulation) and over a
    socket: the same statuses, bodies (timestamps aside) and replays."""

    async def in_process() -> list[tuple[int, object, str | None]]:
        async with trio.open_nursery() as nursery:
            fake = FakeStripe(SimClock(), random.Random(1), nursery)
            replies = []
            for method, path, params, key in PARITY_CALLS:
                request = ApiRequest(
                    method=method,
                    path=path,
                    params=parse_form(urlencode(params)),
                    api_key="sk_test_x",
                    idempotency_key=key,
                )
                reply = await fake.wire(request)
                replied = reply.headers.get("Idempotent-Replayed")
                replies.append(_comparable(reply.status, reply.body, replied))
            fake.stop()
            nursery.cancel_scope.cancel()
        return replies

    async def over_http() -> list[tuple[int, object, str | None]]:
        async with fake_stripe_with_receiver() as (service, _), httpx.AsyncClient() as raw:
            replies = []
            for method, path, params, key in PARITY_CALLS:
                headers = {"Authorization": "Bearer sk_test_x"}
                if key is not None:
                    headers["Idempotency-Key"] = key
                if method == "GET":
                    response = await raw.get(
                        service.base_url + path, params=params, headers=headers
                    )
                else:
                    response = await raw.request(
                        method, service.base_url + path, data=params, headers=headers
                    )
                replied = response.headers.get("Idempotent-Replayed")
                # the one difference by design: a session's url is this server's hosted page
                body = response.content.replace(
                    service.fake.checkout_url.encode(), CHECKOUT_URL.encode()
                )
                replies.append(_comparable(response.status_code, body, replied))
            return replies

    expected = trio.run(in_process)
    got = trio.run(over_http)
    assert [r[0] for r in expected] == [
        200,
        200,
        400,
        400,
        400,
        200,
        200,
        400,
        200,
        400,
        404,
        400,
        404,
        200,
        200,
        400,
        404,
    ]
    assert got == expected
