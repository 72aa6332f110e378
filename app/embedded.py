"""`pidflow serve`: everything on one machine — Redis (REDIS_URL, else a private one), Celery worker
subprocesses and uvicorn in this process. Ctrl-C or SIGTERM stops every child; none outlives us."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from app.redis_local import LocalRedis, default_data_dir, die_with_parent

log = logging.getLogger("pidflow.serve")


QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "PYTHONWARNINGS": "ignore::UserWarning:celery.platforms"}  # no tqdm bars, no root SecurityWarning


def worker_command(index: int, verbose: bool = False, queues: str = "gpu,cpu", name: str | None = None) -> list[str]:
    """The Celery worker command (override with PIDFLOW_WORKER_CMD; `{index}`, `{queues}` and `{name}` are
    replaced). Quiet (no banner, errors only) unless `verbose`."""
    name = name or f"pidflow{index}"
    custom = os.environ.get("PIDFLOW_WORKER_CMD")
    if custom:
        return shlex.split(custom.replace("{index}", str(index)).replace("{queues}", queues).replace("{name}", name))
    quiet = [] if verbose else ["--quiet"]
    return [sys.executable, "-m", "celery", *quiet, "-A", "worker.celery_app", "worker", "--pool=solo",
            "-Q", queues, f"--loglevel={'INFO' if verbose else 'ERROR'}", "-n", f"{name}@%h",
            "--without-mingle", "--without-gossip"]  # no broadcasts (nothing uses them; a full Redis refuses them)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process to keep running: its Celery name, queues and extra environment."""

    name: str
    queues: str
    env: dict = field(default_factory=dict)


def visible_gpus(env=None) -> list[str]:
    """The GPUs this machine shows: CUDA_VISIBLE_DEVICES' entries when it is set, else nvidia-smi's
    indices, else torch's device count; [] when there are none."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip() and gpu.strip() != "-1"]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
        if listed.returncode == 0:
            return [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        import torch

        return [str(index) for index in range(torch.cuda.device_count())]
    except ImportError:
        return []


def parse_gpus(value: str | None, env=None) -> list[str]:
    """`--gpus`: "all" (every visible GPU), or a comma-separated list of GPU ids (indices or UUIDs); an
    entry "0+1" gives one worker both GPUs (a model larger than one GPU, with --device-map auto)."""
    if value is None:
        return []
    if value.strip().lower() == "all":
        gpus = visible_gpus(env)
        if not gpus:
            raise ValueError("--gpus all: no GPU is visible on this machine (nvidia-smi and torch found none)")
        return gpus
    gpus = [gpu.strip() for gpu in value.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus must be all or a list of distinct GPU ids such as 0,1,3, got {value!r}")
    return gpus


def worker_specs(cpu_workers: int, gpus: list[str], host_tag: str = "") -> list[WorkerSpec]:
    """One extraction worker per GPU (queue gpu, CUDA_VISIBLE_DEVICES=<that GPU>, so each sees one device as
    cuda:0) and `cpu_workers` analysis workers (queue cpu, no GPU). Without GPUs, every worker takes both
    queues, as before."""
    if not gpus:
        return [WorkerSpec(f"pidflow{index}{host_tag}", "gpu,cpu") for index in range(cpu_workers)]
    specs = [WorkerSpec(f"pidflow-gpu{gpu.replace('+', '_')}{host_tag}", "gpu",
                        {"CUDA_VISIBLE_DEVICES": gpu.replace("+", ",")}) for gpu in gpus]
    return specs + [WorkerSpec(f"pidflow-cpu{index}{host_tag}", "cpu", {"CUDA_VISIBLE_DEVICES": ""})
                    for index in range(cpu_workers)]


def _check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another with --port") from None


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s` seconds; returns once the process is reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _prewarm(base_url: str, server: uvicorn.Server, service, timeout_s: float = 1800.0) -> None:
    """Submit the default demo analysis once the server is up, remember it as the page's first view
    (`service.set_demo_analysis`) and say in the terminal when it is ready, with its link."""
    from app.service import DEFAULT_REQUEST

    while not server.started and not server.should_exit:
        time.sleep(0.1)
    if server.should_exit:
        return
    start = time.monotonic()
    try:
        job = service.submit(dict(DEFAULT_REQUEST))
        service.set_demo_analysis(job["id"])
        link = f"{base_url}/?analysis={job['id']}"
        if job.get("state") == "succeeded":
            warm_first_page(base_url, link)
            print(f"[pidflow] demo analysis ready (computed before): {link}", flush=True)
            return
        print(f"[pidflow] demo analysis {job['id']} is computing (about a minute); the page shows its "
              f"progress", flush=True)
        while not server.should_exit and time.monotonic() - start < timeout_s:
            job = service.status(job["id"])
            if job.get("state") == "succeeded":
                warm_first_page(base_url, link)
                print(f"[pidflow] demo analysis ready after {time.monotonic() - start:.0f} s: {link}", flush=True)
                return
            if job.get("state") == "failed":
                print(f"[pidflow] the demo analysis failed: {job.get('error')}", flush=True)
                return
            time.sleep(1.0)
    except Exception as exc:  # noqa: BLE001 - a failed warm-up must not stop the server
        print(f"[pidflow] could not run the demo analysis: {exc}", flush=True)


def warm_first_page(base_url: str, link: str) -> None:
    """Ask once, as a browser's first visit would, for what the server builds on its first request: the
    page itself, its layout (the result's decoding and the Results tab's figures) and the callback list,
    so the first visitor does not pay for them (about 0.3 s idle, 0.8 s and more on 2 busy cores)."""
    import httpx

    try:
        with httpx.Client(timeout=30.0) as client:
            client.get(link)
            client.get(f"{base_url}/_dash-layout", headers={"Referer": link})
            client.get(f"{base_url}/_dash-dependencies", headers={"Referer": link})
    except httpx.HTTPError:  # a warm-up only
        pass


def _default_feature_folder(data_dir: Path, env=None) -> str:
    """`pidflow serve` keeps features (extracted runs, uploaded files: one file per layer) in
    <data dir>/features unless PIDFLOW_FEATURE_DIR says where; sets it for the API and the workers. Returns
    the start block's line."""
    env = os.environ if env is None else env
    if env.get("PIDFLOW_FEATURE_DIR"):
        return f"{env['PIDFLOW_FEATURE_DIR']} (PIDFLOW_FEATURE_DIR)"
    folder = data_dir / "features"
    folder.mkdir(parents=True, exist_ok=True)
    env["PIDFLOW_FEATURE_DIR"] = str(folder)
    return f"{folder} (one file per layer; PIDFLOW_FEATURE_DIR moves it)"


def start_block(base_url: str, redis_line: str, data_line: str, workers_line: str,
                feature_line: str | None = None) -> str:
    """The block `pidflow serve` prints at start: where to go, what runs, where data is kept."""
    return "\n".join([
        "",
        "  pidflow is running",
        f"    open       {base_url}/   (the page opens on the demo analysis)",
        f"    API        {base_url}/api/v1/docs   (REST API, also /api/v1/redoc)",
        f"    Redis      {redis_line}",
        f"    data       {data_line}",
        *([f"    features   {feature_line}"] if feature_line else []),
        f"    workers    {workers_line}",
        "    stop       Ctrl-C (stops every process started here)",
        "",
    ])


def _data_line(local_redis) -> str:
    if local_redis is None:
        return "kept by the Redis above"
    where = str(getattr(local_redis, "directory", "?"))
    if getattr(local_redis, "appendonly", False) and not getattr(local_redis, "_own_dir", True):
        return f"kept in {where} (append-only file, kept across restarts; --data-dir moves it)"
    return f"in {where} (temporary: results are lost when pidflow stops)"


def _start_worker(index: int, verbose: bool, log_dir: Path, spec: WorkerSpec | None = None) -> subprocess.Popen:
    spec = spec or WorkerSpec(f"pidflow{index}", "gpu,cpu")
    env = {**os.environ, **spec.env}
    command = worker_command(index, verbose=verbose, queues=spec.queues, name=spec.name)
    if verbose:
        return subprocess.Popen(command, env=env, preexec_fn=die_with_parent)
    log_dir.mkdir(parents=True, exist_ok=True)
    env.update(QUIET_ENV)
    log_name = f"worker{index}.log" if spec.name == f"pidflow{index}" else f"{spec.name}.log"
    with open(log_dir / log_name, "ab") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


def _workers_line(specs: list[WorkerSpec], verbose: bool, log_dir: Path) -> str:
    gpu = [spec.env["CUDA_VISIBLE_DEVICES"] for spec in specs if spec.queues == "gpu"]
    cpu = sum(spec.queues != "gpu" for spec in specs)
    kinds = (f"{len(gpu)} GPU extraction worker(s) (GPU {', '.join(gpu)}), {cpu} CPU analysis worker(s)" if gpu
             else f"{cpu} Celery worker(s)")
    return kinds + ", " + ("logging here (--verbose)" if verbose else
                           f"logs in {log_dir}/ (--verbose shows them here)") + ", restarted if one dies"


class Supervisor:
    """Keeps `pidflow serve`'s workers running: a daemon thread checks them every `poll_s` seconds and
    restarts one that exited (killed, out of memory, crashed), waiting longer (up to a minute) each time
    one dies within `quick_s` seconds of its start, so a worker that cannot start does not spin."""

    def __init__(self, start, count: int, poll_s: float = 1.0, quick_s: float = 20.0):
        self.start, self.poll_s, self.quick_s = start, poll_s, quick_s
        self.children = [start(index) for index in range(count)]
        self.started = [time.monotonic()] * count
        self.restarts = [0] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pidflow-supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = [0.0] * len(self.children)
        while not self._stop.wait(self.poll_s):
            for index, child in enumerate(self.children):
                status = child.poll()
                if status is None:
                    continue
                quick = time.monotonic() - self.started[index] < self.quick_s
                backoff[index] = min(60.0, max(1.0, 2 * backoff[index])) if quick else 0.0
                print(f"[pidflow] worker {index} exited (status {status}); restarting it"
                      + (f" in {backoff[index]:.0f} s" if backoff[index] else ""), flush=True)
                if backoff[index] and self._stop.wait(backoff[index]):
                    return
                self.children[index] = self.start(index)
                self.started[index] = time.monotonic()
                self.restarts[index] += 1

    def __exit__(self, *exc) -> None:
        """Stop supervising, then stop every worker (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for child in self.children:
            stop_process(child)


class _Server(uvicorn.Server):
    """uvicorn that stops on SIGINT/SIGTERM without re-raising the signal, so our cleanup runs."""

    @contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _refuse_an_evicting_redis(url: str) -> None:
    """Exit before anything starts when the Redis at `url` evicts keys: it would lose work silently, and
    its workers refuse to start (the supervisor would restart them for ever)."""
    import redis

    from worker.heartbeat import eviction_problem

    try:
        problem = eviction_problem(redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return  # away for now: the server answers 503 and the workers wait for it
    if problem:
        raise SystemExit(f"pidflow serve: not started: {problem}")


def run_workers(workers: int = 1, gpus: list[str] | None = None, verbose: bool = False,
                log_dir: str | Path | None = None) -> int:
    """`pidflow worker`: keep worker processes running on this machine for the Redis at REDIS_URL (the
    API's, possibly on another machine) until Ctrl-C / SIGTERM: one extraction worker per GPU in `gpus` and
    `workers` CPU analysis workers. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not os.environ.get("REDIS_URL"):
        raise ValueError("pidflow worker: set REDIS_URL to the Redis of the pidflow server these workers serve "
                         "(e.g. redis://head-node:6379/0)")
    if workers < 0:
        raise ValueError("--workers must be 0 or more")
    specs = worker_specs(workers, list(gpus or []), host_tag="-" + socket.gethostname().split(".")[0])
    if not specs:
        raise ValueError("pidflow worker: nothing to start (--workers 0 and no --gpus)")
    _refuse_an_evicting_redis(os.environ["REDIS_URL"])
    signal.signal(signal.SIGTERM, _interrupt)
    folder = Path(log_dir) if log_dir else Path(tempfile.gettempdir()) / "pidflow-logs"
    supervisor = None
    try:
        supervisor = Supervisor(lambda index: _start_worker(index, verbose, folder, specs[index]), len(specs))
        supervisor.__enter__()
        print(f"[pidflow] workers for {os.environ['REDIS_URL']}: {_workers_line(specs, verbose, folder)}",
              flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        if supervisor is not None:
            supervisor.__exit__(None, None, None)
        print("[pidflow] workers stopped", flush=True)


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, data_dir: str | None = None,
          verbose: bool = False, gpus: list[str] | None = None) -> int:
    """Run until Ctrl-C / SIGTERM; returns the exit status. Without REDIS_URL, the private Redis keeps
    jobs, results and queued tasks in `data_dir` (default: `default_data_dir()`), which stays after exit.
    Workers write their logs to files (named in the start block) unless `verbose`, when they log to this
    terminal at INFO."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if workers < 0:
        raise ValueError("--workers must be 0 or more")
    _check_port(host, port)
    signal.signal(signal.SIGTERM, _interrupt)  # before uvicorn runs: stop like Ctrl-C, cleaning up
    local_redis = None
    supervisor = None
    own_feature_dir = False
    try:
        folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
        own_feature_dir = not os.environ.get("PIDFLOW_FEATURE_DIR")
        feature_line = _default_feature_folder(folder)
        if not os.environ.get("REDIS_URL"):
            local_redis = LocalRedis(directory=folder / "redis", appendonly=True,
                                     maxmemory=os.environ.get("PIDFLOW_REDIS_MAXMEMORY") or None).start()
            os.environ["REDIS_URL"] = local_redis.url
            redis_line = f"{local_redis.url} (private, started here)"
        else:
            _refuse_an_evicting_redis(os.environ["REDIS_URL"])
            redis_line = f"{os.environ['REDIS_URL']} (from REDIS_URL)"
        log_dir = local_redis.directory.parent / "logs" if local_redis else Path(tempfile.gettempdir()) / "pidflow-logs"
        specs = worker_specs(workers, list(gpus or []))
        supervisor = Supervisor(lambda index: _start_worker(index, verbose, log_dir, specs[index]),
                                len(specs)).__enter__()
        workers_line = _workers_line(specs, verbose, log_dir)

        from app.server import create_app

        app = create_app()
        server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                        access_log=False, timeout_graceful_shutdown=5))
        base_url = f"http://{host}:{port}"
        print(start_block(base_url, redis_line, _data_line(local_redis), workers_line, feature_line), flush=True)
        print(f"[pidflow] serving on {base_url}/", flush=True)
        if os.environ.get("PIDFLOW_PREWARM", "1") != "0":
            threading.Thread(target=_prewarm, args=(base_url, server, app.state.service), daemon=True).start()
        server.run()
        return 0
    finally:
        if supervisor is not None:
            supervisor.__exit__(None, None, None)
        if local_redis is not None:
            local_redis.stop()
            os.environ.pop("REDIS_URL", None)
        if own_feature_dir:
            os.environ.pop("PIDFLOW_FEATURE_DIR", None)
        print("[pidflow] stopped", flush=True)
