"""A factory that returns something without the engine's methods: bad input (exit 2)."""

from __future__ import annotations

from typing import Any

from reference_impl.ports import EngineEnv


class Checkout:
    """Has a purchase endpoint, but not webhooks, cancel or reconcile."""

    async def create_purchase(self, user_id: str, program_id: str, class_rep: bool) -> Any:
        raise NotImplementedError


def factory(env: EngineEnv) -> Checkout:
    return Checkout()


not_callable = 42
