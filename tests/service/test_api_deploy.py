"""Deployment files: docker-compose.yml parses and wires Redis (AOF on a volume), the API, CPU and GPU
workers and Flower as documented; `docker compose config` validates it where a compose CLI exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_profiles(compose):
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker-cpu", "worker-gpu", "flower"}
    assert services["worker-gpu"]["profiles"] == ["gpu"] and services["flower"]["profiles"] == ["flower"]
    assert "profiles" not in services["api"] and "profiles" not in services["worker-cpu"]


def test_redis_keeps_an_append_only_file_on_a_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in compose["volumes"]


def test_api_and_workers_share_redis_and_the_real_entry_points(compose):
    services = compose["services"]
    for name in ("api", "worker-cpu", "worker-gpu"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    api_command = services["api"]["command"]
    factory = api_command[api_command.index("--factory") - 1]
    module, _, attr = factory.partition(":")
    assert (module, attr) == ("app.server", "create_app")
    from app.server import create_app  # the factory the image starts

    assert callable(create_app)
    command = services["worker-cpu"]["command"]
    assert command[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    # one Celery worker per GPU of the container, on the gpu queue (app.embedded.worker_specs; tests/worker/test_gpu_workers.py)
    assert services["worker-gpu"]["command"][:4] == ["pidflow", "worker", "--gpus", "${PIDFLOW_GPUS:-all}"]


def test_gpu_workers_reserve_an_nvidia_device_and_cache_models(compose):
    gpu = compose["services"]["worker-gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "hf-cache:/data/hf" in gpu["volumes"] and gpu["environment"]["HF_HOME"] == "/data/hf"
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]


def test_dockerfile_pins_torch_and_starts_the_factory():
    dockerfile = (ROOT / "Dockerfile").read_text()
    # torch at the tested version: the Dockerfile installs the constraints file's pin (torch==2.13.0)
    assert "grep -m1 '^torch==' constraints.txt" in dockerfile
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert '"app.server:create_app", "--factory"' in dockerfile
    for folder in ("pidcore", "worker", "app", "static"):
        assert f"COPY {folder} ./{folder}" in dockerfile and (ROOT / folder).is_dir()


@pytest.mark.skipif(not (shutil.which("docker-compose") or shutil.which("docker")), reason="no compose CLI")
def test_compose_cli_accepts_the_file():
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        command = ["docker", "compose"]
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"docker has no compose plugin here: {probe.stderr.strip()[:80]}")
    proc = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "--profile",
                           "flower", "config", "--services"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    if "unknown command" in proc.stderr:
        pytest.skip("docker has no compose plugin here")
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"redis", "api", "worker-cpu", "worker-gpu", "flower"}
