"""`GET /v1/events`: Stripe's list of events, newest first, as an engine reads it to recover.

Why it matters: Stripe's advice for an endpoint that was down is to list the events it never
delivered (`delivery_success=false`: still being retried, or given up) and process them. It is
the only way an engine hears of a session it did not create (a Payment Link, the dashboard,
someone else's code on the account) when every event about it was lost, so the checkers judge
such a session only because this list exists.

What the fake supports: `delivery_success`, `type` (one name, or a group with `*` as at Stripe:
`checkout.session.*`), `types` (up to 20 names, not with `type`), `created` (a time or
`gt`/`gte`/`lt`/`lte`), `limit` (1 to 100), `starting_after` / `ending_before` (an event id; an
unknown one gives an empty page, as the fake's session list does), and Stripe's 30-day window.
An event's `pending_webhooks` says whether it still waits for its endpoint (1) or not (0).

Cost: undelivered events are kept apart (`StripeState.undelivered`, delivery failures only,
with when each was created), so `delivery_success=false` reads only those created at a time the
query wants (an engine that lists each sweep asks for a narrow window); any other filter walks
every event newest first (from disk when the run spills) and stops once a page is full.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from simulator.fake_stripe.errors import invalid_param
from simulator.fake_stripe.state import StripeState

#: how far back Stripe lists events
RETENTION_S = 30 * 86400
#: the most names `types` may hold
MAX_TYPES = 20
PARAMS = frozenset(
    {
        "created",
        "delivery_success",
        "ending_before",
        "expand",
        "limit",
        "starting_after",
        "type",
        "types",
    }
)


@dataclass(frozen=True)
class EventQuery:
    limit: int
    #: None: delivered or not
    delivered: bool | None
    #: the event's `type` matches this
    matches: Callable[[str], bool]
    created: Callable[[int], bool]
    starting_after: str | None
    ending_before: str | None

    @staticmethod
    def parse(params: dict[str, Any], limit: int, created: Callable[[int], bool]) -> EventQuery:
        """The event filters of `params` (`limit` and `created` are parsed by the caller, as
        for every list); 400 for a bad value."""
        if "type" in params and "types" in params:
            raise invalid_param("You may pass either type or types, but not both.", "types")
        return EventQuery(
            limit=limit,
            delivered=_boolean(params.get("delivery_success"), "delivery_success"),
            matches=_type_filter(params),
            created=created,
            starting_after=_cursor(params, "starting_after"),
            ending_before=_cursor(params, "ending_before"),
        )


def list_events(state: StripeState, query: EventQuery) -> dict[str, Any]:
    """One page of events, newest first, with `has_more`."""
    oldest = state.now() - RETENTION_S

    def wanted_at(created: int) -> bool:
        return created >= oldest and query.created(created)

    found = (
        e for e in _newest_first(state, query.delivered, wanted_at) if query.matches(e["type"])
    )
    if query.ending_before is not None:
        # the page just newer than the cursor, still newest first
        newer: list[dict[str, Any]] = []
        for event in found:
            if event["id"] == query.ending_before:
                break
            newer.append(event)
        else:
            newer = []
        page, has_more = newer[-query.limit :], len(newer) > query.limit
    else:
        if query.starting_after is not None:
            found = _after(found, query.starting_after)
        page = []
        has_more = False
        for event in found:
            if len(page) == query.limit:
                has_more = True
                break
            page.append(event)
    return {
        "object": "list",
        "data": [shown(state, e) for e in page],
        "has_more": has_more,
        "url": "/v1/events",
    }


def shown(state: StripeState, event: dict[str, Any]) -> dict[str, Any]:
    """The event as the API shows it now: `pending_webhooks` 0 once its endpoint took it."""
    return {**event, "pending_webhooks": 1 if event["id"] in state.undelivered else 0}


def _newest_first(
    state: StripeState, delivered: bool | None, wanted_at: Callable[[int], bool]
) -> Iterator[dict[str, Any]]:
    """Events created at a wanted time, newest first; undelivered ones are read only then."""
    events = state.events
    if delivered is False:
        for created, position in reversed(list(state.undelivered.values())):
            if wanted_at(created):
                yield events[position]
        return
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if wanted_at(event["created"]) and (
            delivered is None or event["id"] not in state.undelivered
        ):
            yield event


def _after(events: Iterator[dict[str, Any]], cursor: str) -> Iterator[dict[str, Any]]:
    for event in events:
        if event["id"] == cursor:
            yield from events
            return


def _boolean(value: Any, param: str) -> bool | None:
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise invalid_param(f"Invalid boolean: {value}", param)


def _type_filter(params: dict[str, Any]) -> Callable[[str], bool]:
    if "types" in params:
        names = params["types"]
        if not isinstance(names, list) or not names or len(names) > MAX_TYPES:
            raise invalid_param(
                f"Invalid array: types must hold 1 to {MAX_TYPES} event names.", "types"
            )
        if not all(isinstance(n, str) and n for n in names):
            raise invalid_param("Invalid array: types must hold event names.", "types")
        wanted = frozenset(names)
        return lambda kind: kind in wanted
    pattern = params.get("type")
    if pattern is None:
        return lambda kind: True
    if not isinstance(pattern, str) or not pattern or len(pattern) > 100:
        raise invalid_param("Invalid string: type", "type")
    if "*" in pattern:  # Stripe's only wildcard
        group = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
        return lambda kind: group.fullmatch(kind) is not None
    return lambda kind: kind == pattern


def _cursor(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise invalid_param(f"Invalid string: {name}", name)
    return value
