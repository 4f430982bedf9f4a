"""The adversary's forgeries: a hostile webhook body and header, and what a safe engine must do.

Each family (scenario.ATTACKS) turns a base event (a paid completion of a session the attacker
knows) into one concrete attack, its variant drawn from the adversary's random stream. The
expected outcome is part of the forgery, so the checkers hold the engine to it:
- `refuse`: 400 and no write at all (`signature_enforced`, as the forged-webhook probes);
- `ack`: an event that can never succeed is acknowledged (2xx, `webhooks_acknowledged`) and
  changes no purchase (`payment_matches_purchase`);
- `not_honoured`: whatever the answer, no purchase changes (`payment_matches_purchase`).
Foreign sessions are not forgeries (they are real, paid sessions): see simulator/adversary.py.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

REFUSE, ACK, NOT_HONOURED = "refuse", "ack", "not_honoured"
#: request ids of the adversary's posts: refused ones are probes (`signature_enforced`)
ATTACK_REQUEST = "adv-attack-"
PROBE_REQUEST = "probe-adv-"
INJECTIONS: tuple[Any, ...] = ({"$gt": ""}, {"$ne": None}, {"$exists": True}, {"$regex": ".*"})


@dataclass(frozen=True)
class Forgery:
    family: str
    variant: str
    payload: bytes
    header: str | None
    expect: str
    purchase_id: str | None = None
    session_id: str | None = None
    #: validly signed at the time of sending, as Stripe signs each delivery attempt: signed
    #: again if the post must wait for an instance (else the wait alone could age it past the
    #: tolerance, and a correct engine's 400 would read as a refused genuine event)
    signed_now: bool = False


@dataclass
class Forger:
    """Builds forgeries; `secret` is the endpoint's (for attacks "with a valid signature")."""

    rng: random.Random
    secret: str
    tolerance_s: float
    now: Callable[[], float]

    def build(self, family: str, base: dict[str, Any], n: int) -> Forgery:
        return getattr(self, f"_{family}")(base, n)

    # ---- refused for their signature

    def _header_tricks(self, base: dict[str, Any], n: int) -> Forgery:
        payload = _dumps(base)
        now, stale = self._now(), self._stale()
        good, old = self._mac(payload, now), self._mac(payload, stale)
        junk = hashlib.sha256(f"junk{n}".encode()).hexdigest()
        tricks: dict[str, str | None] = {
            "fresh_t_prepended_spaced": f" t={now},t={stale},v1={old}",
            "fresh_t_prepended": f"t={now} ,t={stale},v1={old}",
            "fresh_t_appended": f"t={stale},v1={old},t={now}",
            "t_equals_x": f"t={stale}=x,v1={old}",
            "duplicate_wrong_v1": f"t={now},v1={junk},v1={junk[::-1]}",
            "empty_v1": f"t={now},v1=",
            "other_scheme_only": f"t={now},v0={good}",
            "semicolon_separator": f"t={now};v1={good}",
            "space_before_v1": f"t={now}, v1={good}",
            "non_numeric_t": f"t=now,v1={good}",
            "fractional_t": f"t={now}.0,v1={good}",
            "huge_t": f"t={'9' * 40},v1={junk}",
            "very_long_t": f"t={'9' * 6000},v1={junk}",
            "negative_t": f"t=-{now},v1={junk}",
            "wrong_secret": f"t={now},v1={_hmac('whsec_forged', now, payload)}",
            "no_header": None,
            "empty_header": "",
        }
        variant = self.rng.choice(sorted(tricks))
        return self._forgery("header_tricks", variant, base, payload, tricks[variant], REFUSE)

    def _replays(self, base: dict[str, Any], n: int) -> Forgery:
        payload = _dumps(base)
        stale = self._stale()
        return self._forgery(
            "replays", "past_tolerance", base, payload, self._header(payload, stale), REFUSE
        )

    def _tampered(self, base: dict[str, Any], n: int) -> Forgery:
        signed = _dumps(base)
        body = copy.deepcopy(base)
        obj = body["data"]["object"]
        variant = self.rng.choice(("amount", "reference", "status", "type", "whitespace"))
        if variant == "amount":
            obj["amount_total"] = 1
        elif variant == "reference":
            obj["client_reference_id"] = f"pur_other_{n}"
        elif variant == "status":
            obj["payment_status"] = "no_payment_required"
        elif variant == "type":
            body["type"] = "checkout.session.async_payment_succeeded"
        payload = signed + b" " if variant == "whitespace" else _dumps(body)
        return self._forgery("tampered", variant, base, payload, self._header(signed), REFUSE)

    # ---- correctly signed, refused for their shape

    def _type_confusion(self, base: dict[str, Any], n: int) -> Forgery:
        changes: dict[str, Any] = {
            "id_number": ("id", 12345),
            "id_missing": ("id", KeyError),
            "metadata_list": ("metadata", ["purchase_id", base["data"]["object"]["id"]]),
            "metadata_string": ("metadata", "purchase_id"),
            "amount_string": ("amount_total", "5000"),
            "amount_float": ("amount_total", 5000.5),
            "amount_bool": ("amount_total", True),
            "reference_number": ("client_reference_id", 7),
            "payment_intent_list": ("payment_intent", ["pi_x"]),
            "currency_list": ("currency", ["usd"]),
            "status_number": ("payment_status", 1),
            "object_is_list": (None, []),
        }
        variant = self.rng.choice(sorted(changes))
        field, value = changes[variant]
        return self._signed("type_confusion", variant, _changed(base, field, value), REFUSE)

    def _injection(self, base: dict[str, Any], n: int) -> Forgery:
        fields = ("id", "client_reference_id", "metadata.purchase_id", "payment_intent")
        field = self.rng.choice(fields)
        operator = self.rng.choice(INJECTIONS)
        return self._signed("injection", field, _changed(base, field, operator), REFUSE)

    def _deep_nesting(self, base: dict[str, Any], n: int) -> Forgery:
        depth = self.rng.choice((40, 3000))
        marker = _changed(base, "metadata.note", "@@DEEP@@")
        text = _dumps(marker).decode()
        deep = '{"a": ' * depth + "1" + "}" * depth
        payload = text.replace('"@@DEEP@@"', deep).encode()
        return self._raw_signed("deep_nesting", f"depth_{depth}", base, payload, REFUSE)

    def _huge_integers(self, base: dict[str, Any], n: int) -> Forgery:
        field = self.rng.choice(("amount_total", "created", "expires_at"))
        value = self.rng.choice((2**63, 2**64 + 1, -(2**63) - 1, 10**40))
        return self._signed("huge_integers", field, _changed(base, field, value), REFUSE)

    def _huge_bodies(self, base: dict[str, Any], n: int) -> Forgery:
        padding = "x" * (300 * 1024)
        return self._signed(
            "huge_bodies", "300KiB", _changed(base, "metadata.note", padding), REFUSE
        )

    # ---- correctly signed, well formed: acknowledged or not honoured

    def _unknown_types(self, base: dict[str, Any], n: int) -> Forgery:
        event_type = self.rng.choice(
            ("customer.created", "invoice.paid", "checkout.session.unheard_of", "charge.refunded")
        )
        body = copy.deepcopy(base)
        body["type"] = event_type
        if not event_type.startswith("checkout.session."):
            body["data"]["object"] = {"id": f"obj_adv_{n}", "object": event_type.split(".")[0]}
        return self._signed("unknown_types", event_type, body, ACK)

    def _unknown_objects(self, base: dict[str, Any], n: int) -> Forgery:
        variant = self.rng.choice(
            ("ghost_purchase", "ghost_purchase_known_intent", "no_reference", "ghost_expired")
        )
        body = copy.deepcopy(base)
        obj = body["data"]["object"]
        obj["id"] = f"cs_adv_ghost_{n}"
        ghost = f"pur_adv_ghost_{n}"
        if variant != "ghost_purchase_known_intent":
            obj["payment_intent"] = f"pi_adv_ghost_{n}"
        if variant == "no_reference":
            obj["client_reference_id"], obj["metadata"] = None, {}
        else:
            obj["client_reference_id"], obj["metadata"] = ghost, {"purchase_id": ghost}
        if variant == "ghost_expired":
            body["type"] = "checkout.session.expired"
            obj.update(status="expired", payment_status="unpaid", payment_intent=None)
        return self._signed("unknown_objects", variant, body, ACK, session_id=obj["id"])

    def _contradictions(self, base: dict[str, Any], n: int) -> Forgery:
        """An expiry or payment failure the engine must not act on: its object says otherwise
        (the session is still open, or paid), or it is not the purchase's own session."""
        variant = self.rng.choice(
            ("expired_but_open", "expired_but_paid", "failed_but_paid", "failed_not_its_session")
        )
        body = copy.deepcopy(base)
        obj = body["data"]["object"]
        if variant.startswith("expired"):
            body["type"] = "checkout.session.expired"
        else:
            body["type"] = "checkout.session.async_payment_failed"
        if variant == "expired_but_open":
            obj.update(status="open", payment_status="unpaid", payment_intent=None)
        elif variant == "expired_but_paid":
            obj.update(status="expired", payment_status="paid")
        elif variant == "failed_but_paid":
            obj.update(status="complete", payment_status="paid")
        else:  # names the purchase (client_reference_id, metadata) from a session never issued
            obj.update(id=f"cs_adv_other_{n}", status="complete", payment_status="unpaid")
        return self._signed("contradictions", variant, body, NOT_HONOURED, session_id=obj["id"])

    def _signed_mismatch(self, base: dict[str, Any], n: int) -> Forgery:
        variant = self.rng.choice(("underpaid", "other_currency", "other_mode", "no_intent"))
        changes = {
            "underpaid": ("amount_total", 1),
            "other_currency": ("currency", "eur"),
            "other_mode": ("mode", "subscription"),
            "no_intent": ("payment_intent", None),
        }
        field, value = changes[variant]
        return self._signed("signed_mismatch", variant, _changed(base, field, value), NOT_HONOURED)

    # ---- helpers

    def _now(self) -> int:
        return int(self.now())

    def _stale(self) -> int:
        return self._now() - int(self.tolerance_s) - self.rng.randrange(1, 86400)

    def _mac(self, payload: bytes, timestamp: int) -> str:
        return _hmac(self.secret, timestamp, payload)

    def _header(self, payload: bytes, timestamp: int | None = None) -> str:
        t = self._now() if timestamp is None else timestamp
        return f"t={t},v1={self._mac(payload, t)}"

    def _signed(
        self, family: str, variant: str, body: dict[str, Any], expect: str, **ids: Any
    ) -> Forgery:
        return self._raw_signed(family, variant, body, _dumps(body), expect, **ids)

    def _raw_signed(
        self,
        family: str,
        variant: str,
        base: dict[str, Any],
        payload: bytes,
        expect: str,
        **ids: Any,
    ) -> Forgery:
        forgery = self._forgery(
            family, variant, base, payload, self._header(payload), expect, **ids
        )
        return replace(forgery, signed_now=True)

    def header_now(self, payload: bytes) -> str:
        """A valid `Stripe-Signature` for `payload`, timestamped now."""
        return self._header(payload)

    def _forgery(
        self,
        family: str,
        variant: str,
        base: dict[str, Any],
        payload: bytes,
        header: str | None,
        expect: str,
        **ids: Any,
    ) -> Forgery:
        obj = base["data"]["object"] if isinstance(base["data"]["object"], dict) else {}
        session_id = ids.get("session_id", obj.get("id"))
        return Forgery(
            family,
            variant,
            payload,
            header,
            expect,
            purchase_id=obj.get("client_reference_id") if isinstance(obj, dict) else None,
            session_id=session_id if isinstance(session_id, str) else None,
        )


def paid_completion(session: dict[str, Any], event_id: str, created: int) -> dict[str, Any]:
    """A `checkout.session.completed` event for `session` (its JSON at Stripe), marked paid."""
    obj = {**copy.deepcopy(session), "status": "complete", "payment_status": "paid"}
    obj["payment_intent"] = obj.get("payment_intent") or f"pi_{event_id.removeprefix('evt_')}"
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }


def _changed(base: dict[str, Any], field: str | None, value: Any) -> dict[str, Any]:
    """A deep copy of `base` with data.object's `field` (dotted, or None for the object itself)
    set to `value`, or removed when `value` is KeyError."""
    body = copy.deepcopy(base)
    if field is None:
        body["data"]["object"] = value
        return body
    target = body["data"]["object"]
    *parents, leaf = field.split(".")
    for name in parents:
        if not isinstance(target.get(name), dict):
            target[name] = {}
        target = target[name]
    if value is KeyError:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return body


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(", ", ": ")).encode()


def _hmac(secret: str, timestamp: int, payload: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
