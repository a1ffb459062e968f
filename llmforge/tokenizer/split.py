"""The deterministic train/val split by document: a hash of the document id decides, so a document is in
exactly one split whatever the shard layout, worker count or run."""

from __future__ import annotations

import hashlib


def doc_key(doc: dict) -> bytes:
    """What identifies a document: its id, or its text when it has none."""
    return (doc["id"] or doc["text"]).encode("utf-8", "surrogatepass")


def is_val(doc: dict, val_fraction: float) -> bool:
    if val_fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(doc_key(doc), digest_size=8).digest(), "little")
    return h / 2**64 < val_fraction
