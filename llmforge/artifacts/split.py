"""The deterministic train/val split by origin document: a hash of the id of the document a record was made
from decides, so every copy of a document is in exactly one split whatever the shard layout, worker count
or run.

The data stage writes copies of a document under derived ids: the counterfactual copy of CDA (`{id}#cf`)
and the up-sampled repeats of a source with weight > 1 (`{id}#k`, k ≥ 1, also of the counterfactual:
`{id}#cf#k`); each further CDA step adds another `#cf` (`{id}#cf#cf`). Splitting by the record's own id would put copies of one document in both splits (the model
would be validated on text it trained on), so the suffixes are stripped first.
"""

from __future__ import annotations

import hashlib
import re

# The data stage adds "#cf" per CDA step, then at most one "#k" (mixture repeat), in that order.
COPY_SUFFIX = re.compile(r"(?:#cf)*(?:#[1-9][0-9]*)?$")

# Recorded in the tokens artifact's index.json so a reader knows which documents the val split holds.
SPLIT_RULE = (
    "val when blake2b-64(origin id, or the text when the id is empty) / 2**64 < val_fraction; "
    "origin id = the document id without the data stage's copy suffixes: every '#cf' (counterfactual) "
    "and then '#k' (up-sampled repeat)"
)


def origin_id(doc_id: str) -> str:
    """The id of the document `doc_id` is a copy of (itself when it is not a copy)."""
    return COPY_SUFFIX.sub("", doc_id, count=1)


def doc_key(doc: dict) -> bytes:
    """What identifies a document's origin: its origin id, or its text when it has no id."""
    return (origin_id(doc["id"]) or doc["text"]).encode("utf-8", "surrogatepass")


def is_val(doc: dict, val_fraction: float) -> bool:
    if val_fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(doc_key(doc), digest_size=8).digest(), "little")
    return h / 2**64 < val_fraction


def split_record(val_fraction: float) -> dict:
    """How a tokens artifact was split, for its index.json."""
    return {"by": "origin_document", "val_fraction": val_fraction, "rule": SPLIT_RULE}
