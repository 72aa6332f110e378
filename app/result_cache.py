"""Finished result documents held in process memory, ready to serve: the compact JSON bytes, a gzip
copy and their entity tags are computed once per result, not per request."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

GZIP_LEVEL = 6


@dataclass
class CachedResult:
    """One finished result: `body` (compact JSON), `gzip` (the same, gzip-compressed), their ETags, the
    parsed `document`, `seen`: when its job was last seen alive in Redis, and `claimed`: when a request
    last took on re-checking it (both time.monotonic(), s)."""

    body: bytes
    gzip: bytes
    etag: str
    gzip_etag: str
    document: dict
    seen: float = field(default_factory=time.monotonic)
    claimed: float = 0.0

    @classmethod
    def from_document(cls, document: dict) -> CachedResult:
        body = json.dumps(document, separators=(",", ":")).encode()
        tag = hashlib.blake2b(body, digest_size=12).hexdigest()
        return cls(body=body, gzip=gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0),
                   etag=f'"{tag}"', gzip_etag=f'"{tag}-gz"', document=document)


class LRU:
    """A small thread-safe least-recently-used map (finished results never change for a given id)."""

    def __init__(self, size: int = 32):
        if size < 1:
            raise ValueError(f"LRU size must be at least 1, got {size}")
        self._size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
