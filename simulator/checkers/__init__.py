"""One checker per invariant of DESIGN.md, under its stable name."""

from __future__ import annotations

from simulator.checkers.base import HELD, UNKNOWN, VIOLATED, Checker, FinalFacts, Outcome, Violation
from simulator.checkers.cancel_answer import CancelAnsweredTruly
from simulator.checkers.completion_delivered import CompletionDelivered
from simulator.checkers.counter import CounterConsistent
from simulator.checkers.double_charge import NoDoubleCharge
from simulator.checkers.double_completion import NoDoubleCompletion
from simulator.checkers.engine_exception import NoEngineException
from simulator.checkers.limit_bypass import NoLimitBypass
from simulator.checkers.lost_payment import NoLostPayment
from simulator.checkers.orphan_session import NoOrphanSession
from simulator.checkers.owner_cancels import OnlyOwnerCancels
from simulator.checkers.payment_match import PaymentMatchesPurchase
from simulator.checkers.refund_justified import RefundJustified
from simulator.checkers.signature import SignatureEnforced
from simulator.checkers.single_pending import SinglePendingPerUser
from simulator.checkers.stuck_purchase import NoStuckPurchase
from simulator.checkers.unpaid_fulfilment import NoUnpaidFulfilment
from simulator.checkers.webhooks_acknowledged import WebhooksAcknowledged

CHECKERS: tuple[type, ...] = (
    NoDoubleCompletion,
    NoLimitBypass,
    CounterConsistent,
    NoLostPayment,
    NoUnpaidFulfilment,
    NoOrphanSession,
    SinglePendingPerUser,
    WebhooksAcknowledged,
    SignatureEnforced,
    PaymentMatchesPurchase,
    NoEngineException,
    NoDoubleCharge,
    RefundJustified,
    NoStuckPurchase,
    OnlyOwnerCancels,
    CancelAnsweredTruly,
    CompletionDelivered,
)
INVARIANTS: tuple[str, ...] = tuple(c.name for c in CHECKERS)


def new_checkers() -> list[Checker]:
    return [cls() for cls in CHECKERS]


__all__ = [
    "CHECKERS",
    "HELD",
    "INVARIANTS",
    "UNKNOWN",
    "VIOLATED",
    "Checker",
    "FinalFacts",
    "Outcome",
    "Violation",
    "new_checkers",
]
