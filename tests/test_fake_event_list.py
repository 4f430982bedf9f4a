"""`GET /v1/events` on the fake, through the real SDK: what an engine reads to recover the
events Stripe could not deliver (simulator/fake_stripe/event_list.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import stripe

from simulator.fake_stripe import FakeStripe
from simulator.fake_stripe.spill import Spill
from tests.stripehelpers import make_fake, run, session_params

DAY = 24 * 3600


async def _expired_sessions(fake: FakeStripe, count: int) -> list[str]:
    """`count` sessions expired through the API, a second apart: one event each, in order."""
    client = fake.client()
    events = []
    for n in range(count):
        session = await client.v1.checkout.sessions.create_async(
            session_params(metadata={"purchase_id": f"pur_{n}"})
        )
        await client.v1.checkout.sessions.expire_async(session.id)
        events.append(fake.events[-1]["id"])
        await anyio.sleep(1)
    return events


def _ids(listed: Any) -> list[str]:
    return [e.id for e in listed.data]


@pytest.mark.parametrize("spilled", [False, True], ids=["in-memory", "spilled"])
def test_undelivered_events_are_listed_newest_first_until_delivered(spilled: bool) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            if spilled:
                fake.spill_to(Spill())
            events = await _expired_sessions(fake, 3)
            client = fake.client()
            undelivered = await client.v1.events.list_async({"delivery_success": False})
            assert _ids(undelivered) == events[::-1]
            assert [e.pending_webhooks for e in undelivered.data] == [1, 1, 1]
            fake.delivered(events[1])
            undelivered = await client.v1.events.list_async({"delivery_success": False})
            assert _ids(undelivered) == [events[2], events[0]]
            delivered = await client.v1.events.list_async({"delivery_success": True})
            assert _ids(delivered) == [events[1]]
            assert delivered.data[0].pending_webhooks == 0
            every = await client.v1.events.list_async()
            assert _ids(every) == events[::-1]
            retrieved = await client.v1.events.retrieve_async(events[1])
            assert retrieved.pending_webhooks == 0
            tg.cancel_scope.cancel()

    run(main)


def test_pages_follow_starting_after_and_ending_before() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            events = await _expired_sessions(fake, 5)
            newest = events[::-1]
            client = fake.client()
            first = await client.v1.events.list_async({"limit": 2})
            assert _ids(first) == newest[:2] and first.has_more
            second = await client.v1.events.list_async({"limit": 2, "starting_after": newest[1]})
            assert _ids(second) == newest[2:4] and second.has_more
            last = await client.v1.events.list_async({"limit": 2, "starting_after": newest[3]})
            assert _ids(last) == newest[4:] and not last.has_more
            back = await client.v1.events.list_async({"limit": 2, "ending_before": newest[4]})
            assert _ids(back) == newest[2:4] and back.has_more
            top = await client.v1.events.list_async({"limit": 2, "ending_before": newest[1]})
            assert _ids(top) == newest[:1] and not top.has_more
            unknown = await client.v1.events.list_async({"starting_after": "evt_nope"})
            assert _ids(unknown) == [] and not unknown.has_more
            tg.cancel_scope.cancel()

    run(main)


def test_type_types_and_created_filter_and_thirty_days_are_kept() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            client = fake.client()
            session = await client.v1.checkout.sessions.create_async(session_params())
            await fake.customer_pay(session.id, "card")
            paid = [e["id"] for e in fake.events]
            kinds = [e["type"] for e in fake.events]
            assert "checkout.session.completed" in kinds and len(set(kinds)) > 1
            completed = paid[kinds.index("checkout.session.completed")]
            one = await client.v1.events.list_async({"type": "checkout.session.completed"})
            assert _ids(one) == [completed]
            group = await client.v1.events.list_async({"type": "checkout.session.*"})
            assert _ids(group) == [completed]
            named = await client.v1.events.list_async({"types": ["checkout.session.completed"]})
            assert _ids(named) == [completed]
            await anyio.sleep(10)
            [later] = await _expired_sessions(fake, 1)
            since = fake.events[-1]["created"]
            recent = await client.v1.events.list_async({"created": {"gte": since}})
            assert _ids(recent) == [later]
            exact = await client.v1.events.list_async({"created": since})
            assert _ids(exact) == [later]
            older = await client.v1.events.list_async({"created": {"lt": since}, "limit": 100})
            assert _ids(older) == paid[::-1]
            await anyio.sleep(30 * DAY - 5)  # the first events are now past Stripe's 30 days
            kept = await client.v1.events.list_async({"limit": 100})
            assert _ids(kept) == [later]
            tg.cancel_scope.cancel()

    run(main)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"delivery_success": "maybe"}, "delivery_success"),
        ({"type": "checkout.session.completed", "types": ["x"]}, "types"),
        ({"types": [f"t{n}" for n in range(21)]}, "types"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"created": {"since": 1}}, "created"),
        ({"created": "yesterday"}, "created"),
        ({"sort": "oldest"}, "sort"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(params: dict[str, Any], param: str) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            fake = make_fake(tg)
            with pytest.raises(stripe.InvalidRequestError) as caught:
                await fake.client().v1.events.list_async(params)
            assert caught.value.http_status == 400
            assert caught.value.param == param
            tg.cancel_scope.cancel()

    run(main)
