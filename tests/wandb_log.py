"""Read what a W&B run logged from its offline `run-ID.wandb` file, for the tests: the run's tags and group
and every history row. The file is W&B's transaction log (a 7-byte `:W&B` header, then LevelDB-style 32 KiB
blocks of CRC-checked records, each one protobuf `Record`); wandb 0.31 ships the protobuf classes but no
reader, so this is the few lines that walk the blocks."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ident ":W&B", magic 0xBEE1, version
RECORD = struct.Struct("<IHB")  # crc32, length, type: 1 full, 2 first, 3 middle, 4 last


def _payloads(data: bytes) -> list[bytes]:
    ident, magic, _ = HEADER.unpack_from(data)
    assert ident == b":W&B" and magic == 0xBEE1, "not a W&B transaction log"
    out, pending, pos = [], b"", HEADER.size
    while pos + RECORD.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < RECORD.size:  # the block's tail is padding
            pos += room
            continue
        crc, length, kind = RECORD.unpack_from(data, pos)
        if length == 0 and kind == 0:
            break
        body = data[pos + RECORD.size : pos + RECORD.size + length]
        assert zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF == crc, f"bad checksum at byte {pos}"
        pos += RECORD.size + length
        pending += body
        if kind in (1, 4):
            out.append(pending)
            pending = b""
    return out


def read_run(path: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2

    run: dict[str, Any] = {"history": []}
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(tags=list(record.run.tags), group=record.run.run_group, name=record.run.display_name)
        elif kind == "history":
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            run["history"].append(row)
    return run
