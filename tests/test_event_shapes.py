"""What the reference accepts as a page of Stripe's event list and as an event: an answer from
the API is checked as a webhook body is (reference_impl/webhook_signature.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reference_impl.webhook_signature import InvalidWebhook, event_envelope, event_page

EVENT = {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}}


def test_a_page_gives_its_items_and_the_cursor_only_when_there_is_more() -> None:
    assert event_page({"data": [EVENT], "has_more": True}) == ([EVENT], "evt_1")
    assert event_page({"data": [EVENT], "has_more": False}) == ([EVENT], None)
    assert event_page({"data": [], "has_more": True}) == ([], None)
    # has_more must be the boolean, and the last item must name an id to go on from
    assert event_page({"data": [EVENT], "has_more": "true"}) == ([EVENT], None)
    assert event_page({"data": [{"id": 7}], "has_more": True}) == ([{"id": 7}], None)
    assert event_page({"data": ["evt_1"], "has_more": True}) == (["evt_1"], None)


@pytest.mark.parametrize("page", [None, [], "data", {}, {"data": "evt_1"}, {"data": {"0": EVENT}}])
def test_a_page_not_shaped_as_a_list_answer_is_refused(page: Any) -> None:
    with pytest.raises(InvalidWebhook):
        event_page(page)


@pytest.mark.parametrize(
    "event",
    [
        "evt_1",
        {"type": "checkout.session.completed"},
        {"type": 1, "data": {"object": {}}},
        {"type": "checkout.session.completed", "data": []},
        {"type": "checkout.session.completed", "data": {"object": "cs_1"}},
    ],
)
def test_an_item_not_shaped_as_an_event_is_refused(event: Any) -> None:
    with pytest.raises(InvalidWebhook):
        event_envelope(event)
    assert event_envelope(EVENT) is EVENT
