"""A query worker process: runs queries one at a time for the admin API.

DataFusion runs native code in-process; a query that exhausts memory or overflows a
stack aborts the process it runs in. Running it here, in a child with an address-space
limit, means such a query ends this worker (the server answers with an error and starts
another) instead of the server.

Protocol over stdin/stdout: a request is a 4-byte big-endian length and a JSON object
``{"sql", "json", "registry"}``; the answer is a length-prefixed JSON header
``{"status", "content_type", "rows_read"}`` followed by a length-prefixed body.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from pyrestate.query.engine import Limits, QueryEngine
from pyrestate.query.tables import PartitionSource, RegistrySnapshot

_LEN = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (n,) = _LEN.unpack(head)
    return stream.read(n)


def frame(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def main() -> None:
    config = json.loads(sys.argv[1])
    address_space = config.get("address_space_bytes")
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    limits = Limits(**config.get("limits", {}))
    sources = [PartitionSource(Path(p)) for p in config["partitions"]]
    engine = QueryEngine(sources, config["restate_version"], limits)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Anything printed by libraries must not corrupt the answers.
    sys.stdout = sys.stderr
    while True:
        request = read_frame(stdin)
        if request is None:
            return
        req = json.loads(request)
        answer = engine.run(req["sql"], RegistrySnapshot(**req["registry"]), req["json"])
        header = {
            "status": answer.status,
            "content_type": answer.content_type,
            "rows_read": answer.rows_read,
        }
        stdout.write(frame(json.dumps(header).encode()) + frame(answer.body))
        stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    main()
