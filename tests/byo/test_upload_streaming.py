"""Big features files end to end: the client asks the server's limits (OPTIONS /api/v1/features) and refuses a
file over them before sending anything, then streams the body from disk; the server streams it to the feature
folder and checks and stores it a layer at a time, so its peak memory does not follow the file's size; a file
that needs a feature folder on a server without one gets 413 saying so; float16 stays float16 on disk.

A real uvicorn server in a subprocess (its peak RSS read from /proc/<pid>/status, VmHWM), a private Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.client import PidflowClient
from app.redis_local import LocalRedis
from pidcore.features.files import read_features

MIB = 1 << 20
LAYERS, QUESTIONS, HIDDEN = 33, 500, 1024  # float16 x 2 sources: 64.5 MiB
SERVER = textwrap.dedent("""
    import sys, uvicorn
    from app.server import create_app
    uvicorn.run(create_app(with_ui=False), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")
CLIENT = textwrap.dedent("""
    import sys
    from app.client import PidflowClient
    def peak():  # KiB; VmHWM starts afresh at exec (ru_maxrss may carry the forking parent's)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    before = peak()
    with PidflowClient(sys.argv[1]) as client:
        info = client.upload_features(sys.argv[2])
    print(info["id"], before, peak())
""")


def _features_file(path: Path, layers: int, questions: int, hidden: int, seed: int) -> Path:
    """A float16 safetensors features file written a layer at a time (per-layer keys)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for source in ("vision", "language"):
        for layer in range(layers):
            tensors[f"{source}.{layer}"] = rng.standard_normal((questions, hidden), dtype=np.float32).astype(np.float16)
    tensors["target"] = rng.standard_normal((questions, 4), dtype=np.float32)
    save_file(tensors, str(path), metadata={"meta": '{"model": "synthetic", "target": "hidden"}'})
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class _Server:
    def __init__(self, redis_url: str, env: dict):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "REDIS_URL": redis_url, "PIDFLOW_PREWARM": "0", **env}
        for name in ("PIDFLOW_FEATURE_DIR", "PIDFLOW_FEATURE_DTYPE", "PIDFLOW_API_TOKENS"):
            if name not in env:
                full_env.pop(name, None)
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port)], env=full_env,
                                        cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/healthz", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def redis_url():
    with LocalRedis() as server:
        yield server.url


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    return _features_file(tmp_path_factory.mktemp("big") / "big.safetensors", LAYERS, QUESTIONS, HIDDEN, seed=1)


def test_a_64_mib_upload_streams_through_with_flat_server_memory(redis_url, big_file, tmp_path):
    folder = tmp_path / "features"
    server = _Server(redis_url, {"PIDFLOW_FEATURE_DIR": str(folder)})
    try:
        with PidflowClient(server.url) as client:
            limits = client.upload_limits()
            assert limits["max_upload_bytes"] == 4 * 1024 * MIB and limits["feature_folder"] is True  # streamed: 4 GiB
            assert limits["max_run_bytes_without_feature_folder"] is None
            small = _features_file(tmp_path / "small.safetensors", 3, 40, 8, seed=2)
            client.upload_features(small)  # the upload path's imports happen here, not in what is measured
        before = _peak_rss_mib(server.process.pid)
        run = subprocess.run([sys.executable, "-c", CLIENT, server.url, str(big_file)], capture_output=True,
                             text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert run.returncode == 0, run.stderr
        sha, client_before, client_after = run.stdout.split()
        server_rise = _peak_rss_mib(server.process.pid) - before
        client_rise = (int(client_after) - int(client_before)) / 1024
    finally:
        server.stop()
    size = big_file.stat().st_size / MIB
    print(f"file {size:.1f} MiB: server peak RSS +{server_rise:.1f} MiB, client +{client_rise:.1f} MiB")
    assert 60 < size < 70
    # the server held about a layer (1 MiB float16; checks and copies in float32), not the file (64.5 MiB;
    # the whole-body path held ~4x the file); the client one 1 MiB chunk at a time
    assert server_rise < 16, f"server peak RSS rose by {server_rise:.1f} MiB for a {size:.1f} MiB file"
    assert client_rise < 16, f"client peak RSS rose by {client_rise:.1f} MiB for a {size:.1f} MiB file"
    assert sha == read_features(big_file, lazy=True).sha256
    run_folder = folder / f"upload{sha}" / "baseline"
    layer = np.load(run_folder / "vision" / "032.npy")
    assert layer.dtype == np.float16 and layer.shape == (QUESTIONS, HIDDEN)  # float16 stays float16 on disk
    from safetensors import safe_open

    with safe_open(str(big_file), "np") as original:
        assert np.array_equal(layer, original.get_tensor("vision.32"))
    assert not list(folder.glob(".partial-upload*"))  # the received body is gone once stored


def test_over_the_limit_nothing_is_sent_and_without_a_feature_folder_the_server_says_so(redis_url, big_file, tmp_path):
    medium = _features_file(tmp_path / "medium.safetensors", 5, 200, 1024, seed=3)  # 3.9 MiB
    server = _Server(redis_url, {"PIDFLOW_MAX_UPLOAD_BYTES": str(40 * MIB), "PIDFLOW_FEATURE_REDIS_MAX_MB": "1"})
    try:
        with PidflowClient(server.url) as client:
            limits = client.upload_limits()
            assert limits == {"max_upload_bytes": 40 * MIB, "feature_folder": False,
                              "max_run_bytes_without_feature_folder": 1 * MIB, "decoded_bound_bytes": 80 * MIB}
            with pytest.raises(ValueError, match=r"big.safetensors is 64.5 MiB; the server at .* accepts features "
                                                 r"files up to 40.0 MiB .*nothing was sent"):
                client.upload_features(big_file)
            with pytest.raises(ValueError, match=r"has no feature folder.*\(1 MiB\): nothing was sent.*"
                                                 r"PIDFLOW_FEATURE_DIR"):
                client.upload_features(medium)
        # a client that does not ask: the server refuses it plainly (not 503 "Redis is not reachable")
        response = httpx.post(server.url + "/api/v1/features?filename=medium.safetensors",
                              content=medium.read_bytes(), timeout=60)
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "its baseline run holds 4 MiB of pooled states, more than one Redis value can hold here (1 MiB" in detail
        assert "this server has no feature folder: set PIDFLOW_FEATURE_DIR" in detail
        options = httpx.options(server.url + "/api/v1/features")
        assert options.headers["x-pidflow-max-upload-bytes"] == str(40 * MIB)
        assert options.headers["x-pidflow-feature-folder"] == "false"
    finally:
        server.stop()


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(redis_url, tmp_path):
    server = _Server(redis_url, {"PIDFLOW_MAX_UPLOAD_BYTES": str(2 * MIB),
                                 "PIDFLOW_FEATURE_DIR": str(tmp_path / "features")})
    try:
        def body():  # no Content-Length: the route counts as it receives
            for _ in range(8):
                yield b"\0" * MIB

        response = httpx.post(server.url + "/api/v1/features", content=body(), timeout=60)
        assert response.status_code == 413
        assert f"this server accepts up to {2 * MIB} bytes" in response.json()["detail"]
        assert not list((tmp_path / "features").glob(".partial-upload*"))
    finally:
        server.stop()


def test_lazy_reading_equals_reading_whole(tmp_path):
    from pidcore.features.files import write_features

    rng = np.random.default_rng(0)
    vision = rng.standard_normal((4, 300, 512)).astype(np.float16)
    language = rng.standard_normal((4, 300, 512)).astype(np.float32)
    target = rng.standard_normal((300, 3)).astype(np.float32)
    for suffix in ("npz", "safetensors", "pt"):
        path = tmp_path / f"f.{suffix}"
        write_features(path, vision=vision, language=list(language), target=target, tasks=["a"] * 300,
                       images=rng.integers(0, 255, (300, 32, 40, 3), dtype=np.uint8),
                       knockout={"vision": vision, "language": language, "target": target,
                                 "edges": ["image->question"], "layers": [1, 2]})
        whole, lazy = read_features(path), read_features(path, lazy=True)
        assert type(lazy.features.vision).__name__ in ("FileArray", "_TensorRows")  # not loaded
        assert lazy.sha256 == whole.sha256 and lazy.describe() == whole.describe()
        for a, b in ((whole.features.vision, lazy.features.vision), (whole.features.language, lazy.features.language),
                     (whole.knockout.vision, lazy.knockout.vision), (whole.images, lazy.images)):
            assert np.asarray(b).dtype == a.dtype and np.array_equal(np.asarray(b), a) and np.array_equal(b[2], a[2])
    bad = vision.copy()
    bad[3, 5, 7] = np.nan
    from safetensors.numpy import save_file

    save_file({"vision": bad, "language": language, "target": target}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"vision has 1 NaN or infinite value\(s\) \(first at index \(3, 5, 7\)\)"):
        read_features(tmp_path / "bad.safetensors", lazy=True)


def test_pidflow_serve_keeps_a_feature_folder_in_its_data_dir(tmp_path):
    from app.embedded import _default_feature_folder

    env = {}
    line = _default_feature_folder(tmp_path / "data", env)
    assert env["PIDFLOW_FEATURE_DIR"] == str(tmp_path / "data" / "features") and (tmp_path / "data" / "features").is_dir()
    assert "one file per layer" in line
    env = {"PIDFLOW_FEATURE_DIR": "/elsewhere"}
    assert _default_feature_folder(tmp_path / "data", env) == "/elsewhere (PIDFLOW_FEATURE_DIR)"
    assert env == {"PIDFLOW_FEATURE_DIR": "/elsewhere"}


def test_a_compressed_npz_is_inflated_to_disk_not_memory(tmp_path):
    import tracemalloc

    rng = np.random.default_rng(4)
    vision = rng.standard_normal((4, 300, 2048)).astype(np.float32)  # 9.4 MiB, a layer 2.3 MiB
    language = rng.standard_normal((4, 300, 2048)).astype(np.float32)
    target = rng.standard_normal((300, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "packed.npz", vision=vision, language=language, target=target)
    tracemalloc.start()
    try:
        lazy = read_features(tmp_path / "packed.npz", lazy=True)
        for layer in range(4):
            assert np.array_equal(lazy.features.vision[layer], vision[layer])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lazy.features.vision.file is not None  # an unlinked temporary file, not the archive
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB traced for 18.8 MiB of arrays"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed.npz"]  # nothing named left beside it


def test_a_torch_file_is_read_from_its_stored_bytes(tmp_path):
    """.pt: a restricted unpickler reads only data.pkl and makes every contiguous tensor a FileArray over its
    stored bytes (bfloat16 read as float32); a strided view is read alone; an unknown global goes to torch.load
    with weights_only, which refuses it."""
    import pickle
    import tracemalloc
    import zipfile

    import torch

    rng = np.random.default_rng(5)
    vision = torch.from_numpy(rng.standard_normal((12, 400, 1000), dtype=np.float32)).to(torch.bfloat16)
    target = torch.from_numpy(rng.standard_normal((400, 6), dtype=np.float32))[:, :3]  # a strided view
    path = tmp_path / "run.pt"
    torch.save({"vision": vision, "language": [layer.float() for layer in vision], "target": target,
                "qids": [f"q{i}" for i in range(400)], "meta": {"model": "m"}}, path)
    whole = read_features(path)
    tracemalloc.start()
    try:
        lazy = read_features(path, lazy=True)
        same = all(np.array_equal(lazy.features.language[layer], whole.features.language[layer]) for layer in range(12))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(lazy.features.vision).__name__ == "FileArray" and lazy.features.vision.dtype == np.float32
    assert np.array_equal(np.asarray(lazy.features.vision), whole.features.vision)
    assert same
    assert np.array_equal(lazy.features.target, whole.features.target) and list(lazy.features.qids) == list(whole.features.qids)
    # the file holds 27.5 MiB of states (9.2 bfloat16, 18.3 float32), 55 MiB once decoded to float32; a
    # float32 layer is 1.5 MiB, and checking one (bfloat16 widened, finite masks) takes a few of that
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB traced"

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled",))

    source = zipfile.ZipFile(path)
    data = next(name for name in source.namelist() if name.endswith("data.pkl"))
    with zipfile.ZipFile(tmp_path / "evil.pt", "w", compression=zipfile.ZIP_STORED) as evil:
        for name in source.namelist():
            evil.writestr(name, pickle.dumps({"vision": Evil()}, protocol=2) if name == data else source.read(name))
    with pytest.raises(ValueError, match="not a readable torch file .*weights_only"):
        read_features(tmp_path / "evil.pt", lazy=True)


def test_the_streamed_limit_by_default_takes_a_7b_file_where_a_feature_folder_holds_it(tmp_path):
    from app.settings import Settings
    from app.uploads import streamed_limit

    folder = {"PIDFLOW_FEATURE_DIR": str(tmp_path)}
    assert streamed_limit(Settings(), folder) == 4 << 30  # a 516 MiB float16 file of 1,000 questions fits
    assert streamed_limit(Settings(), {}) == 256 * MIB  # without a folder its runs go to Redis: as the dashboard
    assert streamed_limit(Settings(max_upload_bytes=300 * MIB), {**folder, "PIDFLOW_MAX_UPLOAD_BYTES": "314572800"}) \
        == 300 * MIB  # set: it is the limit
    assert streamed_limit(Settings(max_upload_bytes=10 * MIB), folder) == 10 * MIB
