"""Fakes of the engine's side-effect ports: fulfilment and receipt email.

They are the ledgers the checkers trust: every grant call and every delivered email is kept
here, independent of what the engine wrote in its own store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field, replace
from typing import Any

from reference_impl.ports import EmailError
from simulator import scheduling
from simulator.fake_stripe.spill import KeySet, RecordLog, Spill
from simulator.requests import current_request

Recorder = Callable[..., Any]


def _no_record(type: str, **fields: Any) -> None:
    return None


def as_id(value: Any) -> Any:
    """An id an engine handed a port, as the ledgers keep it: a string (or None) as is, anything
    else (an object a hostile webhook smuggled in) as a tagged string, so that the ledgers and
    the checkers reading them never hold an unhashable id."""
    if value is None or isinstance(value, str):
        return value
    return f"<{type(value).__name__}> {json.dumps(value, sort_keys=True, default=str)}"


@dataclass(frozen=True, slots=True)
class Grant:
    purchase_id: str
    user_id: str
    program_id: str
    session_id: str
    instance: str


@dataclass
class RecordingFulfilment:
    """Every call is a real grant, except a repeat of an idempotency key (the provider grants
    once per key, as an access service keyed by request would); a second grant for one purchase
    is a double fulfilment."""

    instance: str = "i0"
    record: Recorder = _no_record
    grants: MutableSequence[Grant] | RecordLog[Grant] = field(default_factory=list)
    _keys: set[str] | KeySet = field(default_factory=set)

    def spill_to(self, spill: Spill) -> None:
        """Keep the grants and seen keys on disk (a long run's ledger); call before the first."""
        assert not self.grants and not self._keys
        self.grants = RecordLog(spill.db, "grant", Grant)
        self._keys = KeySet(spill.db, "grant_key")

    def on(self, instance: str) -> RecordingFulfilment:
        """The same ledger as the port of `instance`: its grants name the instance that made
        them (a double fulfilment across a rolling deploy shows which two). Call after
        `spill_to`: the view shares the ledger it finds."""
        return replace(self, instance=instance)

    async def grant(
        self,
        *,
        purchase_id: str,
        user_id: str,
        program_id: str,
        session_id: str,
        idempotency_key: str | None = None,
    ) -> None:
        await scheduling.checkpoint()
        purchase_id, user_id = as_id(purchase_id), as_id(user_id)
        program_id, session_id = as_id(program_id), as_id(session_id)
        if idempotency_key is not None:
            idempotency_key = as_id(idempotency_key)
            if idempotency_key in self._keys:
                self.record(
                    "fulfilment.deduplicated",
                    purchase_id=purchase_id,
                    key=idempotency_key,
                    instance=self.instance,
                    req=current_request.get(),
                )
                return
            self._keys.add(idempotency_key)
        self.grants.append(Grant(purchase_id, user_id, program_id, session_id, self.instance))
        self.record(
            "fulfilment",
            purchase_id=purchase_id,
            user_id=user_id,
            program_id=program_id,
            session_id=session_id,
            instance=self.instance,
            req=current_request.get(),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    purchase_id: str
    user_id: str
    idempotency_key: str


@dataclass
class FakeEmail:
    """An email provider that delivers once per idempotency key, and can be made to fail.

    `fail` is consulted per call (the nemesis sets it); a failed call delivers nothing.
    """

    record: Recorder = _no_record
    fail: Callable[[], bool] = lambda: False
    delivered: MutableSequence[Receipt] | RecordLog[Receipt] = field(default_factory=list)
    attempts: int = 0
    _keys: set[str] | KeySet = field(default_factory=set)

    def spill_to(self, spill: Spill) -> None:
        """Keep receipts and seen keys on disk (a long run's ledger); call before the first."""
        assert not self.delivered and not self._keys
        self.delivered = RecordLog(spill.db, "receipt", Receipt)
        self._keys = KeySet(spill.db, "receipt_key")

    async def send_receipt(self, *, purchase_id: str, user_id: str, idempotency_key: str) -> None:
        await scheduling.checkpoint()
        purchase_id, user_id, idempotency_key = (
            as_id(purchase_id),
            as_id(user_id),
            as_id(idempotency_key),
        )
        self.attempts += 1
        if self.fail():
            self.record("email.failed", purchase_id=purchase_id, key=idempotency_key)
            raise EmailError(f"email provider unavailable (receipt for {purchase_id})")
        if idempotency_key in self._keys:
            self.record("email.deduplicated", purchase_id=purchase_id, key=idempotency_key)
            return
        self._keys.add(idempotency_key)
        self.delivered.append(Receipt(purchase_id, user_id, idempotency_key))
        self.record("email.sent", purchase_id=purchase_id, key=idempotency_key)
