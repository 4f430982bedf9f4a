"""What `paysim stripe serve` prints while it runs: one line per API request, customer action,
webhook answer and fault switch, so a terminal and a CI log alike show what the service did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def line_for(type: str, fields: dict[str, Any]) -> str | None:
    """The line for one record, or None for records not worth a line."""
    if type == "stripe.request":
        extra = " (replayed)" if fields.get("replayed") else ""
        if fields.get("fault"):
            extra += f" [fault: {fields['fault']}]"
        status = fields.get("status") or "no answer"
        return f"api      {fields['method']} {fields['path']} -> {status}{extra}"
    if type == "stripe.customer":
        return f"customer {fields['session_id']} {fields['flow']}: {fields['result']}"
    if type == "stripe.event":
        return f"event    {fields['id']} {fields['event_type']}"
    if type == "webhook.response":
        late = " (late: Stripe had stopped waiting)" if fields.get("late") else ""
        dup = f" duplicate={fields['duplicate']}" if fields.get("duplicate") else ""
        answer = fields.get("error") or fields.get("status")
        return f"webhook  {fields['event_id']} attempt {fields['attempt']}{dup} -> {answer}{late}"
    if type in ("webhook.acknowledged", "webhook.given_up"):
        word = type.removeprefix("webhook.").replace("_", " ")
        return f"webhook  {fields['event_id']} {word} after {fields['attempts']} attempt(s)"
    if type == "fault.start":
        return f"fault    on: {fields['kind']} (probability {fields['probability']:g})"
    if type == "fault.end":
        return f"fault    off: {fields['kind']}"
    return None


def printer(echo: Callable[[str], None]) -> Callable[..., None]:
    """A `record(type, **fields)` that echoes each record's line with the wall-clock time."""

    def record(type: str, **fields: Any) -> None:
        line = line_for(type, fields)
        if line is not None:
            echo(f"{time.strftime('%H:%M:%S')} {line}")

    return record
