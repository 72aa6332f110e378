"""API speed: cached-result GET latency under concurrent clients (p50/p99, ms), and the demo analysis
from POST to result, cold and cached (s).

    python benchmarks/bench_api.py [--clients 50] [--requests 3000] [--n-questions 400] [--workers 1]
    python benchmarks/bench_api.py --fake      # GETs only, against a synthetic result (no worker needed)

The real run starts `pidflow serve` (private Redis, Celery worker(s), uvicorn) as a user would and times
two demo analyses from POST to parsed result, cold (computed) and cached (same request again): a small
one (60 questions, dims 4/4/3, no flows) and the default request (flows on); then cached-result GETs of
the default one. The --fake run starts uvicorn on a stand-in job layer whose result document has the demo's size
(400 questions x 7 layers). Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.embedded import stop_process  # noqa: E402
from app.redis_local import free_port  # noqa: E402
from app.served import spawn, wait_healthy  # noqa: E402

FAKE_SERVER = textwrap.dedent("""
    import sys, redis, uvicorn
    sys.path.insert(0, {root!r})
    import app.service as service_module
    import tests.service.fakejobs as fake
    from app.redis_local import LocalRedis
    from app.server import create_app
    from app.service import AnalysisService
    from app.settings import Settings

    service_module._num_decoder_layers = lambda model: fake.NUM_LAYERS
    real = fake.synthetic_result
    fake.synthetic_result = lambda request: real(request, n_questions=400)
    with LocalRedis() as local:
        client = redis.Redis.from_url(local.url)
        service = AnalysisService(Settings(redis_url=local.url), jobs=fake.FakeJobs(client), redis_client=client)
        uvicorn.run(create_app(service=service, with_ui=False), port={port}, log_level="warning")
""")


SMALL_REQUEST = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 60, "dims": [4, 4, 3],
                 "gaussianize": False}


def start_server(fake: bool, port: int, workers: int = 1) -> subprocess.Popen:
    command = [sys.executable, "-c", FAKE_SERVER.format(root=str(ROOT), port=port)] if fake else None
    return spawn(port, workers=workers, command=command)


def post_to_result(base: str, request: dict, timeout_s: float = 1800) -> tuple[float, str, int]:
    """Seconds from POST to a parsed result document, the job id and the POST status code
    (one keep-alive client, status polled every 50 ms)."""
    with httpx.Client(base_url=base, timeout=60) as client:
        started = time.perf_counter()
        submitted = client.post("/api/v1/analyses", json=request)
        submitted.raise_for_status()
        job = submitted.json()
        while job["state"] != "succeeded":
            if job["state"] == "failed":
                raise SystemExit(f"analysis failed: {job['error']}")
            if time.perf_counter() - started > timeout_s:
                raise SystemExit("analysis timed out")
            time.sleep(0.05)
            job = {**job, **client.get(job["status_url"]).json()}
        client.get(job["result_url"]).json()
        return time.perf_counter() - started, job["id"], submitted.status_code


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, int]:
    """One keep-alive HTTP/1.1 GET on an open connection: (status, body bytes)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return status, len(body)


async def load(url: str, clients: int, total: int) -> tuple[list[float], int, int]:
    """`clients` concurrent keep-alive connections issue `total` GETs: latencies (ms), errors, body size.
    A minimal asyncio HTTP/1.1 client, so the load generator costs little of the shared CPU."""
    parsed = httpx.URL(url)
    request = f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    size = 0
    remaining = total

    async def one_client():
        nonlocal remaining, errors, size
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port, limit=1 << 22)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    status, size = await _get(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status = 0
                    reader, writer = await asyncio.open_connection(parsed.host, parsed.port, limit=1 << 22)
                latencies.append(1000 * (time.perf_counter() - started))
                errors += status != 200
        finally:
            writer.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors, size


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[round(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--n-questions", type=int, default=400, help="questions of the demo analysis")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes of the real run")
    parser.add_argument("--fake", action="store_true", help="no worker: GETs of a synthetic result only")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(args.fake, port, args.workers)
    try:
        wait_healthy(base, proc, workers=0 if args.fake else args.workers)
        request = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": args.n_questions}
        if args.fake:
            _, job_id, _ = post_to_result(base, request)
            print("mode: fake job layer (synthetic result, 400 questions x 7 layers)")
        else:
            print(f"mode: pidflow serve, {args.workers} worker(s)")
            for label, body in ((f"small ({SMALL_REQUEST['n_questions']} q, no flows)", SMALL_REQUEST),
                                (f"default ({args.n_questions} q, flows)", request)):
                cold, job_id, code = post_to_result(base, body)
                cached, _, cached_code = post_to_result(base, body)
                print(f"demo analysis {label}: POST -> result cold {cold:.2f} s (POST {code}), "
                      f"cached {1000 * cached:.1f} ms (POST {cached_code})")
        url = f"{base}/api/v1/analyses/{job_id}/result"
        asyncio.run(load(url, args.clients, min(200, args.requests)))  # warm-up
        started = time.perf_counter()
        latencies, errors, size = asyncio.run(load(url, args.clients, args.requests))
        elapsed = time.perf_counter() - started
        print(f"cached-result GET ({size / 1024:.0f} KiB), {args.clients} concurrent clients, "
              f"{args.requests} requests: p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms, {args.requests / elapsed:.0f} req/s, errors {errors}")
    finally:
        stop_process(proc, timeout_s=30)

if __name__ == "__main__":
    main()
