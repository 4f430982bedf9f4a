"""An instance's fulfilment and email ports with a crash point before each call.

The store observer gives the nemesis a crash point before every store call; these views give it
one before every side effect as well. That is the world a crash between committing and acting
makes: the purchase is `completed` in the store, and the grant or the receipt it owes has not
happened. An engine that does its side effects only on the path that committed never does them
at all once that path dies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from reference_impl.ports import Email, Fulfilment

#: awaited before a side effect with the port call's name; may crash the instance
BeforeSideEffect = Callable[[str], Awaitable[None]]
#: how such a crash's `instance.crash` reason begins (the evidence tells the two crash kinds by it)
CRASH_REASON = "crash point before side effect"


@dataclass(frozen=True)
class GuardedFulfilment:
    inner: Fulfilment
    before: BeforeSideEffect

    async def grant(
        self,
        *,
        purchase_id: str,
        user_id: str,
        program_id: str,
        session_id: str,
        idempotency_key: str | None = None,
    ) -> None:
        await self.before("fulfilment.grant")
        await self.inner.grant(
            purchase_id=purchase_id,
            user_id=user_id,
            program_id=program_id,
            session_id=session_id,
            idempotency_key=idempotency_key,
        )


@dataclass(frozen=True)
class GuardedEmail:
    inner: Email
    before: BeforeSideEffect

    async def send_receipt(self, *, purchase_id: str, user_id: str, idempotency_key: str) -> None:
        await self.before("email.send_receipt")
        await self.inner.send_receipt(
            purchase_id=purchase_id, user_id=user_id, idempotency_key=idempotency_key
        )
