"""Concurrent GETs for the load tests (many threads, one pooled client)."""

from __future__ import annotations

import concurrent.futures

import httpx


def get_concurrently(url: str, expected, n: int = 200, timeout_s: float = 30) -> list[tuple[int, bool]]:
    """GET `url` from `n` threads at once; (status code, JSON body == expected) per request."""
    with httpx.Client(limits=httpx.Limits(max_connections=n), timeout=timeout_s) as client:
        def get(_):
            response = client.get(url)
            return response.status_code, response.json() == expected

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(get, range(n)))
