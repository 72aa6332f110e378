"""Closed-loop HTTP load generators for the API benchmarks: a minimal asyncio HTTP/1.1 client (Python,
always there) and Debian's `wrk` (C, cheaper per request; `apt-get install wrk`). Both keep `clients`
keep-alive connections busy on one URL and report latency percentiles (ms) and throughput."""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass

import httpx


@dataclass
class LoadRun:
    """One load run: latencies in ms, throughput in requests/s, non-200 answers and failures."""

    client: str
    p50_ms: float
    p99_ms: float
    rps: float
    requests: int
    errors: int


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[round(q * 1000) - 1]


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One keep-alive GET on an open connection: its status; the body is read, not decoded."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _python_load(url: str, clients: int, total: int, headers: dict) -> tuple[list[float], int]:
    parsed = httpx.URL(url)
    lines = [f"GET {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def one_client():
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port, limit=1 << 22)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    status = await _get(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status = 0
                    reader, writer = await asyncio.open_connection(parsed.host, parsed.port, limit=1 << 22)
                latencies.append(1000 * (time.perf_counter() - started))
                errors += status != 200
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors


def python_load(url: str, clients: int, total: int, headers: dict | None = None) -> LoadRun:
    """`total` GETs over `clients` concurrent connections with the asyncio client."""
    started = time.perf_counter()
    latencies, errors = asyncio.run(_python_load(url, clients, total, headers or {}))
    elapsed = time.perf_counter() - started
    return LoadRun("python-asyncio", percentile(latencies, 0.5), percentile(latencies, 0.99), total / elapsed,
                   total, errors)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """(p50 ms, p99 ms, requests/s, requests, errors) from `wrk --latency` output."""
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return p50, p99, rps, requests, errors + (int(non_2xx.group(1)) if non_2xx else 0)


def wrk_load(url: str, clients: int, duration_s: float, headers: dict | None = None) -> LoadRun:
    """wrk with one thread (the cheapest client) for `duration_s` seconds."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration_s))}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=duration_s + 60).stdout
    return LoadRun("wrk", *parse_wrk(output))
