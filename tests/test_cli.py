"""The pidflow command line: argument errors exit non-zero with a message, never a traceback."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import uvicorn

import app.service as service_module
from app.redis_local import LocalRedis, free_port
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import FAILING_SEED, NUM_LAYERS, FakeJobs


def test_knockout_needs_layers():
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "analyze", "--knockout", "image->question"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--knockout-layers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_gaussianize_mode_option():
    import argparse

    from app.cli import _add_request_options, _request_dict

    parser = argparse.ArgumentParser()
    _add_request_options(parser)
    assert _request_dict(parser.parse_args([]))["gaussianize"] == "auto"
    assert _request_dict(parser.parse_args(["--gaussianize", "copula"]))["gaussianize"] == "copula"
    assert _request_dict(parser.parse_args(["--no-gaussianize"]))["gaussianize"] == "none"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "analyze", "--gaussianize", "flows"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'flows'" in proc.stderr and "Traceback" not in proc.stderr


# --- pidflow analyze --server: through a live HTTP server (uvicorn in a thread, real Redis) ---------


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hosted_server():
    with LocalRedis() as local, pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)
        client = redis.Redis.from_url(local.url)
        service = AnalysisService(Settings(redis_url=local.url, api_tokens=("cli-token",)),
                                  jobs=FakeJobs(client), redis_client=client)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service=service, with_ui=False), port=port,
                                               log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(10)


def run_cli(*args, env_token=None):
    env = {k: v for k, v in os.environ.items() if k != "PIDFLOW_TOKEN"}
    if env_token:
        env["PIDFLOW_TOKEN"] = env_token
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_analyze_through_server_saves_the_result(hosted_server, tmp_path):
    out = tmp_path / "result.json"
    proc = run_cli("analyze", "--server", hosted_server, "--n-questions", "20", "--dims", "2", "2", "1", "--bootstrap", "0",
                   "-o", str(out),
                   env_token="cli-token")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["request"]["n_questions"] == 20
    assert len(result["runs"]["baseline"]["layers"]) == NUM_LAYERS + 1
    assert "100%" in proc.stderr  # the progress bar reached the end
    assert f"result written to {out}" in proc.stdout


def test_analyze_through_server_needs_the_token(hosted_server, tmp_path):
    proc = run_cli("analyze", "--server", hosted_server, "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 2 and "401" in proc.stderr and "Bearer" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = run_cli("analyze", "--server", hosted_server, "--token", "cli-token", "--dims", "4", "4", "0")
    assert bad.returncode == 2 and "dims" in bad.stderr and "Traceback" not in bad.stderr


def test_analyze_with_unreachable_server():
    proc = run_cli("analyze", "--server", f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 2 and "cannot reach" in proc.stderr and "Traceback" not in proc.stderr


def test_failed_remote_analysis_exits_1_with_the_reason(hosted_server, tmp_path):
    proc = run_cli("analyze", "--server", hosted_server, "--seed", str(FAILING_SEED), "-o", str(tmp_path / "r.json"),
                   env_token="cli-token")
    assert proc.returncode == 1 and "out of memory" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()
