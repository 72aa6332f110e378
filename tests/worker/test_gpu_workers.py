"""One extraction worker per GPU: `pidflow worker --gpus 0,1` (and `pidflow serve --gpus`) start one Celery
worker per GPU on the gpu queue, each with CUDA_VISIBLE_DEVICES set to its GPU, plus CPU workers on the cpu
queue. No GPU here: real Celery workers stand in for GPU workers, and their environment is read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from app.embedded import WorkerSpec, parse_gpus, worker_specs
from app.redis_local import LocalRedis
from worker.heartbeat import live_workers

ROOT = Path(__file__).resolve().parents[2]


def test_specs_one_worker_per_gpu():
    assert parse_gpus("0,1") == ["0", "1"]
    assert parse_gpus("all", {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert parse_gpus("0+1,2+3") == ["0+1", "2+3"]
    assert worker_specs(1, ["0", "1"]) == [
        WorkerSpec("pidflow-gpu0", "gpu", {"CUDA_VISIBLE_DEVICES": "0"}),
        WorkerSpec("pidflow-gpu1", "gpu", {"CUDA_VISIBLE_DEVICES": "1"}),
        WorkerSpec("pidflow-cpu0", "cpu", {"CUDA_VISIBLE_DEVICES": ""})]
    assert worker_specs(2, []) == [WorkerSpec("pidflow0", "gpu,cpu"), WorkerSpec("pidflow1", "gpu,cpu")]
    assert worker_specs(0, ["0+1"])[0].env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    for bad in ("0,0", "0,,1"):
        try:
            parse_gpus(bad)
        except ValueError as error:
            assert "distinct GPU ids" in str(error)
        else:
            raise AssertionError(bad)
    try:
        parse_gpus("all", {"CUDA_VISIBLE_DEVICES": ""})
    except ValueError as error:
        assert "no GPU is visible" in str(error)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _environ(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_pidflow_worker_gpus_starts_one_celery_worker_per_gpu(tmp_path):
    with LocalRedis() as server:
        env = {**os.environ, "REDIS_URL": server.url, "PIDFLOW_WORKER_PRELOAD": "0"}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        parent = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--gpus", "0,1", "--workers", "1",
                                   "--batch-size", "auto", "--log-dir", str(tmp_path)], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client = redis.Redis.from_url(server.url)
        try:
            deadline = time.monotonic() + 90
            while live_workers(client) < 3 and time.monotonic() < deadline and parent.poll() is None:
                time.sleep(0.5)
            assert live_workers(client) == 3, parent.stdout.read() if parent.poll() is not None else "timeout"
            children = _children(parent.pid)
            seen = {}
            for child in children:
                command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                queues = command[command.index(b"-Q") + 1].decode()
                child_env = _environ(child)
                seen[child_env["CUDA_VISIBLE_DEVICES"]] = (queues, child_env["PIDFLOW_BATCH_SIZE"])
            assert seen == {"0": ("gpu", "auto"), "1": ("gpu", "auto"), "": ("cpu", "auto")}
            names = sorted(name.decode().split("@")[0] for name in client.smembers("pidflow:workers"))
            host = os.uname().nodename.split(".")[0]
            assert names == sorted(f"pidflow-{kind}-{host}" for kind in ("cpu0", "gpu0", "gpu1"))
        finally:
            parent.send_signal(signal.SIGTERM)
            output, _ = parent.communicate(timeout=60)
        assert parent.returncode == 0
        assert "3 GPU" not in output and "2 GPU extraction worker(s) (GPU 0, 1), 1 CPU analysis worker(s)" in output
        assert all(not Path(f"/proc/{child}").exists() for child in children)


def test_serve_gpus_needs_a_cpu_worker_and_passes_the_gpus(monkeypatch, capsys):
    from app import cli

    seen = {}
    monkeypatch.setattr("app.embedded.serve", lambda **kwargs: seen.update(kwargs) or 0)
    monkeypatch.setattr(cli, "_missing_server_modules", lambda: [])
    assert cli.main(["serve", "--gpus", "0,1", "--workers", "2"]) == 0
    assert seen["gpus"] == ["0", "1"] and seen["workers"] == 2
    assert cli.main(["serve", "--gpus", "0", "--workers", "0"]) == 2
    assert "analyses need at least one CPU worker" in capsys.readouterr().err


def test_the_gpu_service_healthcheck_wants_a_live_worker_per_gpu(tmp_path):
    """docker-compose.yml's worker-gpu healthcheck as the container's shell runs it, with a fake nvidia-smi
    listing two GPUs: healthy once both GPUs' workers of this container beat."""
    import yaml

    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker-gpu"]
    assert service["command"] == ["pidflow", "worker", "--gpus", "${PIDFLOW_GPUS:-all}", "--workers", "0"]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "${PIDFLOW_GPU_COUNT:-all}"
    command = service["healthcheck"]["test"][1].replace("$$", "$")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\necho "GPU 0: H100"\necho "GPU 1: H100"\n')
    (fake / "nvidia-smi").chmod(0o755)
    (fake / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (fake / "python").chmod(0o755)
    with LocalRedis() as server:
        env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "REDIS_URL": server.url, "HOSTNAME": "c0ffee"}

        def healthy() -> bool:
            return subprocess.run(["sh", "-c", command], env=env, timeout=60).returncode == 0

        client = redis.Redis.from_url(server.url)
        client.set("pidflow:worker:pidflow-gpu0-c0ffee@c0ffee:7", "1")
        client.set("pidflow:worker:pidflow-gpu1-other@other:7", "1")  # another container's
        assert not healthy()
        client.set("pidflow:worker:pidflow-gpu1-c0ffee@c0ffee:8", "1")
        assert healthy()
