"""The equality indexes stay lean: what a long run's purchases cost them."""

from __future__ import annotations

from typing import Any

import mongomock

from reference_impl import embedded_index, embedded_store


def test_the_equality_index_is_lean() -> None:
    """A document lacking the field costs the index nothing; a value held once maps to its key
    alone; one document's values are one string; positions are kept once per collection."""
    embedded_store.install()
    coll = mongomock.MongoClient()["t"].lean  # a plain mongomock store, with the fast paths
    for n in range(50):
        doc: dict[str, Any] = {"_id": f"d{n}", "status": ["pending", "completed"][n % 2]}
        if n % 2:
            doc["session"] = f"cs_{n}"
        coll.insert_one(doc)
    assert coll.find_one({"session": "cs_7"})["_id"] == "d7"
    assert [d["_id"] for d in coll.find({"status": "completed"})][:3] == ["d1", "d3", "d5"]
    indexes = embedded_index.of(coll._store)
    session, status = indexes.fields["session"], indexes.fields["status"]
    assert len(session._values) == 25 and all(type(v) is str for v in session._values.values())
    assert all(type(k) is str for k in session._ids.values())
    assert {type(held) for held in status._ids.values()} == {set}
    assert len(indexes._pos) == 50  # one position per document, not one per field
