"""API speed: cached-result GET latency under concurrent clients (p50/p99, ms; requests/s; server CPU
per request), plain and gzip-encoded, and the demo analysis from POST to result, cold and cached (s).

    python benchmarks/bench_api.py [--clients 50] [--client both|python|wrk] [--repeat 3] [--workers 1]
    python benchmarks/bench_api.py --fake          # GETs only, against a synthetic result (no worker)
    python benchmarks/bench_api.py --tree /path    # start the server of another checkout (before/after)

The real run starts `pidflow serve` (private Redis, Celery worker(s), uvicorn) as a user would and times
two demo analyses from POST to parsed result, cold (computed) and cached (same request again): a small
one (60 questions, dims 4/4/3, no flows) and the default request (flows on); then cached-result GETs of
the default one. The --fake run starts uvicorn on a stand-in job layer whose result document has the
demo's size (400 questions x 7 layers). Loads: the Python asyncio client (`--requests` GETs) and, when
installed, `wrk` (one thread, `--duration` s), which costs the shared CPU much less; each figure is the
median of `--repeat` runs. Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
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
from benchmarks import http_load  # noqa: E402

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
        uvicorn.run(create_app(service=service, with_ui=False), port={port}, log_level="warning", access_log=False)
""")


SMALL_REQUEST = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": 60, "dims": [4, 4, 3],
                 "gaussianize": False}


def start_server(fake: bool, port: int, workers: int, tree: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", FAKE_SERVER.format(root=str(tree), port=port)] if fake else None
    return spawn(port, workers=workers, command=command, cwd=tree)


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


ENCODINGS = {"identity": {"Accept-Encoding": "identity"}, "gzip": {"Accept-Encoding": "gzip"}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children), s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, pid: int, client: str, encoding: str, args) -> str:
    """Median p50/p99/throughput/server CPU of `args.repeat` load runs, as one line."""
    headers = ENCODINGS[encoding]
    runs, cpu_ms = [], []
    for _ in range(args.repeat):
        before = cpu_seconds(pid)
        if client == "wrk":
            run = http_load.wrk_load(url, args.clients, args.duration, headers)
        else:
            run = http_load.python_load(url, args.clients, args.requests, headers)
        cpu_ms.append(1000 * (cpu_seconds(pid) - before) / run.requests)
        runs.append(run)
    median = statistics.median
    return (f"  {client:<14} {encoding:<8}: p50 {median(r.p50_ms for r in runs):5.1f} ms, "
            f"p99 {median(r.p99_ms for r in runs):5.1f} ms, {median(r.rps for r in runs):5.0f} req/s, "
            f"server CPU {median(cpu_ms):.2f} ms/request, errors {sum(r.errors for r in runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000, help="GETs per run of the Python client")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run of wrk")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is printed)")
    parser.add_argument("--client", choices=("both", "python", "wrk"), default="both")
    parser.add_argument("--n-questions", type=int, default=400, help="questions of the demo analysis")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes of the real run")
    parser.add_argument("--fake", action="store_true", help="no worker: GETs of a synthetic result only")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose server runs (default: this)")
    args = parser.parse_args()
    if args.clients < 1 or args.requests < args.clients or args.repeat < 1 or args.duration <= 0:
        parser.error("need --clients >= 1, --requests >= --clients, --repeat >= 1, --duration > 0")
    clients = ["python", "wrk"] if args.client == "both" else [args.client]
    if "wrk" in clients and not http_load.wrk_available():
        print("wrk is not installed (apt-get install wrk): Python client only")
        clients.remove("wrk")
    if not clients:
        raise SystemExit("no load client")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(args.fake, port, args.workers, args.tree)
    try:
        wait_healthy(base, proc, workers=0 if args.fake else args.workers)
        request = {"model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "n_questions": args.n_questions}
        tree = "" if args.tree.resolve() == ROOT else f" (server from {args.tree})"
        if args.fake:
            _, job_id, _ = post_to_result(base, request)
            print(f"mode: fake job layer (synthetic result, 400 questions x 7 layers){tree}")
        else:
            print(f"mode: pidflow serve, {args.workers} worker(s){tree}")
            for label, body in ((f"small ({SMALL_REQUEST['n_questions']} q, no flows)", SMALL_REQUEST),
                                (f"default ({args.n_questions} q, flows)", request)):
                cold, job_id, code = post_to_result(base, body)
                cached, _, cached_code = post_to_result(base, body)
                print(f"demo analysis {label}: POST -> result cold {cold:.2f} s (POST {code}), "
                      f"cached {1000 * cached:.1f} ms (POST {cached_code})")
        url = f"{base}/api/v1/analyses/{job_id}/result"
        sizes = {name: httpx.get(url, headers=headers).num_bytes_downloaded for name, headers in ENCODINGS.items()}
        http_load.python_load(url, args.clients, min(500, args.requests))  # warm-up
        print(f"cached-result GET, {args.clients} concurrent keep-alive clients, median of {args.repeat} runs "
              f"(identity {sizes['identity'] / 1024:.0f} KiB, gzip {sizes['gzip'] / 1024:.0f} KiB on the wire):")
        for client in clients:
            for encoding in ENCODINGS:
                print(measure(url, proc.pid, client, encoding, args), flush=True)
    finally:
        stop_process(proc, timeout_s=30)


if __name__ == "__main__":
    main()
