"""The black-box driver's parts, each against a case it must refuse and a case it must accept:
the HTTP target adapter (templates, JSON pointers, answers mapped to the engine protocol),
the state reader, the served engine's hostile-input handling, and the SMTP receipt sink."""

from __future__ import annotations

import json
import smtplib
from typing import Any

import httpx
import pytest
import trio

from reference_impl import errors
from simulator.blackbox.serving import serve_asgi
from simulator.blackbox.settings import BlackboxSettings
from simulator.blackbox.sinks import receipt_message, smtp_sink
from simulator.blackbox.state import BadState, StatePoller, validated
from simulator.blackbox.target import HttpTarget, json_pointer, render_body, render_path
from simulator.services import FakeEmail
from simulator.topology import InstanceCrashed, InstanceDown
from tests.blackbox_sockets import listening_ports

# ---- templates and pointers


def test_templates_quote_paths_and_json_encode_bodies() -> None:
    values = {"user_id": 'a b/"c', "purchase_id": "p/1", "class_rep": True}
    assert render_path("/purchases/{purchase_id}/cancel", values) == "/purchases/p%2F1/cancel"
    body = render_body('{"u": {user_id}, "rep": {class_rep}}', values)
    assert body is not None and json.loads(body) == {"u": 'a b/"c', "rep": True}
    assert render_body("", values) is None


def test_json_pointer() -> None:
    doc = {"a": {"b/c": [10, {"d": "x"}]}, "~k": 1}
    assert json_pointer(doc, "/a/b~1c/1/d") == "x"
    assert json_pointer(doc, "/~0k") == 1
    assert json_pointer(doc, "/a/missing") is None
    assert json_pointer(doc, "/a/b~1c/9") is None


# ---- answers mapped to what an engine returns or raises


def _target(handler: Any) -> HttpTarget:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpTarget("http://service.test", BlackboxSettings(), client)


def _answer(status: int, body: Any) -> Any:
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "raised", "known"),
    [
        (409, {"error": "limit_reached"}, errors.LimitReached, True),
        (409, {"error": "already_purchased"}, errors.AlreadyPurchased, True),
        (503, {}, errors.Busy, True),
        (502, {}, errors.UpstreamError, True),
        (504, {}, errors.UpstreamError, False),
        (422, {"error": "weird"}, errors.PurchaseError, True),
        (500, {}, RuntimeError, None),
    ],
)
def test_refusals_map_to_engine_errors(status: int, body: Any, raised: type, known: Any) -> None:
    target = _target(_answer(status, body))
    with pytest.raises(raised) as caught:
        trio.run(target.create_purchase, "u1", "prog_1", True)
    if raised is errors.UpstreamError:
        assert caught.value.outcome_known is known


def test_create_answer_needs_both_ids() -> None:
    good = _target(_answer(200, {"purchase_id": "p1", "session_id": "cs_1", "reused": True}))
    result = trio.run(good.create_purchase, "u1", "prog_1", True)
    assert (result.purchase_id, result.session_id, result.reused) == ("p1", "cs_1", True)
    bad = _target(_answer(200, {"purchase_id": "p1"}))
    with pytest.raises(Exception, match="session id"):
        trio.run(bad.create_purchase, "u1", "prog_1", True)


def test_requests_carry_the_templates_and_the_users_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    trio.run(_target(handler).cancel_purchase, "u 1", "p/1")
    assert seen[0].method == "POST" and seen[0].url.raw_path == b"/purchases/p%2F1/cancel"
    assert seen[0].headers["x-user-id"] == "u 1"
    assert json.loads(seen[0].content) == {"user_id": "u 1"}


def test_network_failures_are_down_or_unknown() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    def hang_up(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("closed mid-answer")

    with pytest.raises(InstanceDown):
        trio.run(_target(refuse).create_purchase, "u1", "prog_1", True)
    with pytest.raises(InstanceCrashed):
        trio.run(_target(hang_up).create_purchase, "u1", "prog_1", True)


def test_an_oversized_answer_is_not_read_whole() -> None:
    target = _target(lambda request: httpx.Response(200, content=b"x" * (300 * 1024)))
    with pytest.raises(Exception, match="larger than"):
        trio.run(target.create_purchase, "u1", "prog_1", True)


# ---- state


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "expected an object"),
        ({"programs": []}, "purchases: expected a list"),
        ({"programs": [{"x": 1}], "purchases": []}, "programs[0]: expected an object with an _id"),
        (
            {"programs": [{"_id": "p", "class_rep_count": "3"}], "purchases": []},
            "programs[0].class_rep_count: expected an integer",
        ),
    ],
)
def test_a_state_not_in_paysims_schema_is_refused(data: Any, problem: str) -> None:
    with pytest.raises(BadState, match=problem.replace("[", r"\[").replace("]", r"\]")):
        validated(data, "state")


def test_the_poller_records_each_change_once() -> None:
    states = [
        {"programs": [{"_id": "p", "class_rep_count": 0}], "purchases": []},
        {
            "programs": [{"_id": "p", "class_rep_count": 1}],
            "purchases": [{"_id": "x", "status": "pending", "class_rep": True}],
        },
        {
            "programs": [{"_id": "p", "class_rep_count": 1}],
            "purchases": [{"_id": "x", "status": "pending", "class_rep": True}],
        },
    ]
    recorded: list[dict[str, Any]] = []

    class Source:
        async def read(self) -> Any:
            return states.pop(0)

        async def aclose(self) -> None:
            return None

    poller = StatePoller(Source(), lambda t, **f: recorded.append({"type": t, **f}), every_s=1)

    async def poll_three() -> None:
        for _ in range(3):
            await poller.poll_once()

    trio.run(poll_three)
    writes = [
        (e["coll"], e["id"], e["doc"].get("class_rep_count") or e["doc"].get("status"))
        for e in recorded
    ]
    # the first read, then only what changed (purchases before programs within a read)
    assert writes == [("programs", "p", None), ("purchases", "x", "pending"), ("programs", "p", 1)]
    assert poller.final_state()["purchases"][0]["_id"] == "x"


# ---- the served engine refuses hostile input


def test_the_served_engine_refuses_bad_requests_and_changes_nothing() -> None:
    from simulator.blackbox.served import ServeOptions, serve_engine
    from simulator.engines import resolve

    async def main() -> list[tuple[int, str]]:
        out = []
        options = ServeOptions(stripe_url="http://127.0.0.1:9")  # Stripe is never reached
        async with (
            serve_engine(resolve("reference"), options) as served,
            httpx.AsyncClient(base_url=served.url) as http,
        ):
            for method, path, kwargs in [
                ("POST", "/purchases", {"content": b"[1]"}),
                ("POST", "/purchases", {"json": {"user_id": "", "program_id": "prog_1"}}),
                (
                    "POST",
                    "/purchases",
                    {"json": {"user_id": "u", "program_id": "p", "class_rep": "yes"}},
                ),
                ("POST", "/purchases", {"content": b"{" + b" " * 20000 + b"}"}),
                (
                    "POST",
                    "/purchases",
                    {
                        "json": {"user_id": "u", "program_id": "p"},
                        "headers": {"x-user-id": "v"},
                    },
                ),
                (
                    "POST",
                    "/webhooks/stripe",
                    {"content": b"{}", "headers": {"stripe-signature": "t=1,v1=ab"}},
                ),
                ("POST", "/paysim/reset", {"json": {"programs": [{"id": "p"}]}}),
                ("GET", "/nowhere", {}),
            ]:
                response = await http.request(method, path, **kwargs)
                out.append((response.status_code, response.text))
            state = (await http.get("/paysim/state")).json()
            out.append((len(state["purchases"]), json.dumps(state["programs"])))
        return out

    answers = trio.run(main)
    assert [a[0] for a in answers[:-1]] == [400, 400, 400, 413, 403, 400, 400, 404]
    assert "class_rep: expected true or false" in answers[2][1]
    assert answers[-1][0] == 0 and '"class_rep_count": 0' in answers[-1][1]


# ---- the SMTP sink


def test_receipts_by_smtp_are_delivered_once_per_key_and_refused_during_an_outage() -> None:
    before = listening_ports()
    failing = {"on": False}
    email = FakeEmail(fail=lambda: failing["on"])

    def send(host: str, port: int, key: str) -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.sendmail("a@x", ["b@x"], receipt_message("pur_1", "u1", key))

    async def main() -> list[str]:
        results = []
        async with smtp_sink(email) as (host, port):
            for key, fail in (("k1", False), ("k1", False), ("k2", True)):
                failing["on"] = fail
                try:
                    await trio.to_thread.run_sync(send, host, port, key)
                    results.append("sent")
                except smtplib.SMTPDataError as exc:
                    results.append(str(exc.smtp_code))
            try:
                await trio.to_thread.run_sync(
                    lambda: smtplib.SMTP(host, port, timeout=10).sendmail(
                        "a@x", ["b@x"], b"Subject: hi\r\n\r\nno headers"
                    )
                )
            except smtplib.SMTPDataError as exc:
                results.append(str(exc.smtp_code))
        return results

    assert trio.run(main) == ["sent", "sent", "451", "550"]
    assert [r.idempotency_key for r in email.delivered] == ["k1"]
    assert listening_ports() == before


def test_an_http_server_is_stopped_even_when_the_block_fails() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def main() -> None:
        async with serve_asgi(app):
            raise RuntimeError("boom")

    before = listening_ports()
    with pytest.raises(RuntimeError):
        trio.run(main)
    assert listening_ports() == before


def test_mongo_state_maps_the_services_own_collections_and_fields(monkeypatch: Any) -> None:
    """A service's MongoDB in its own words (Mongoose-style names, ObjectIds) read as paysim's
    schema; the driver would poll it with --state mongodb://HOST/DB."""
    import mongomock
    import pymongo
    from bson import ObjectId

    from simulator.blackbox.settings import StateMapping
    from simulator.blackbox.state import MongoState

    monkeypatch.setattr(pymongo, "MongoClient", mongomock.MongoClient)
    mapping = StateMapping(
        programs="programs",
        purchases="payments",
        class_rep_limit="classRepLimit",
        class_rep_count="classRepCount",
        user_id="userId",
        program_id="programId",
        class_rep="isClassRep",
        status="status",
        stripe_session_id="stripeSessionId",
    )
    source = MongoState("mongodb://db.test:27017/shop", mapping)
    db = source._client["shop"]
    pid = ObjectId()
    db.programs.insert_one({"_id": pid, "classRepLimit": 3, "classRepCount": 1})
    db.payments.insert_one(
        {
            "userId": "u1",
            "programId": pid,
            "isClassRep": 1,
            "status": "pending",
            "stripeSessionId": "cs_1",
        }
    )
    state = trio.run(source.read)
    assert state["programs"] == [{"_id": str(pid), "class_rep_limit": 3, "class_rep_count": 1}]
    purchase = state["purchases"][0]
    assert purchase["program_id"] == str(pid) and purchase["class_rep"] is True
    assert purchase["stripe_session_id"] == "cs_1" and isinstance(purchase["_id"], str)
    db.programs.update_one({"_id": pid}, {"$set": {"classRepCount": "one"}})
    with pytest.raises(BadState, match="class_rep_count: expected an integer"):
        trio.run(source.read)
    with pytest.raises(BadState, match="names no database"):
        MongoState("mongodb://db.test:27017", mapping)
