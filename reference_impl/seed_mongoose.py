"""What Mongoose (8.x, the seed's `package.json`) does under the seed's model calls, over the store port.

The seed never writes `$set` by hand: it loads a document, assigns fields and calls `save()`.
Mongoose then sends `updateOne({_id}, {$set: <the paths modified since loading>, updatedAt})`:
no condition on what the stored document holds now, so the last writer wins; nothing at all when
no path changed; and `DocumentNotFoundError` when no document matched (it was deleted meanwhile).
Read-modify-write races in the seed come from exactly this, so the port keeps it.

`generate_order_number` is `Purchase.generateOrderNumber` (backend/src/models/Purchase.ts:L195-218
at github.com/TravisHFan/at-Cloud-sign-up-system, commit dc90aebe): read the day's highest order
number, add one. Two concurrent purchases read the same number; the `unique` index on
`orderNumber` (L101-107) refuses the second insert.
"""

from __future__ import annotations

import datetime
from typing import Any

from reference_impl.store import AsyncCollection


class DocumentNotFoundError(Exception):
    """Mongoose's error when `save()` matches no document (it was deleted after being read)."""


class Document:
    """A loaded Mongoose document: assignments are tracked; `save()` sets only what changed."""

    def __init__(self, collection: AsyncCollection, doc: dict[str, Any]) -> None:
        self._collection = collection
        self._loaded = doc
        self._modified: dict[str, Any] = {}

    def __getitem__(self, path: str) -> Any:
        return self._modified.get(path, self._loaded.get(path))

    def get(self, path: str, default: Any = None) -> Any:
        value = self[path]
        return default if value is None else value

    def __setitem__(self, path: str, value: Any) -> None:
        """Assigning the value a path already has does not mark it modified (Mongoose compares)."""
        if path not in self._modified and self._loaded.get(path) == value:
            return
        self._modified[path] = value

    async def save(self, now: float) -> None:
        """`doc.save()`: `$set` of the modified paths plus `updatedAt`, matched by `_id` only."""
        if not self._modified:
            return
        changes = {**self._modified, "updated_at": now}
        result = await self._collection.update_one({"_id": self._loaded["_id"]}, {"$set": changes})
        if result.matched_count == 0:
            raise DocumentNotFoundError(
                f'No document found for query "{{ _id: {self._loaded["_id"]!r} }}" '
                f'on model "{self._collection.name}"'
            )
        self._loaded = {**self._loaded, **changes}
        self._modified = {}


async def find_one(collection: AsyncCollection, query: dict[str, Any]) -> Document | None:
    """`Model.findOne(query)`: a tracked document, or None."""
    doc = await collection.find_one(query)
    return None if doc is None else Document(collection, doc)


def ensure_order_number_index(collection: Any) -> None:
    """Mongoose's autoIndex at model compile time: `orderNumber` is `unique` (Purchase.ts:L101-107).

    `collection` is the synchronous pymongo-API collection: index creation happens when the
    process starts, before any request, as Mongoose does it.
    """
    # sparse: every purchase the seed writes has an order number (`required`), so this changes
    # nothing for them; it only lets purchases preloaded without one coexist (scenario `preload`)
    collection.create_index("order_number", unique=True, sparse=True)


async def generate_order_number(collection: AsyncCollection, now: float) -> str:
    """Purchase.ts:L196-218: `ORD-YYYYMMDD-NNNNN`, the day's highest number plus one."""
    day = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%d")
    prefix = f"ORD-{day}"
    latest = await collection.find_one(
        {"order_number": {"$regex": f"^{prefix}"}}, sort=[("order_number", -1)]
    )
    sequence = 1
    if latest is not None:
        sequence = int(str(latest["order_number"]).rsplit("-", 1)[1]) + 1
    return f"{prefix}-{sequence:05d}"
