"""A 7B features file of 1,000 questions (33 layers x 4,096 x 2 sources, float16: 516 MiB) through
`pidflow analyze --features F --server URL`'s upload: a real uvicorn API server (subprocess, its own private
Redis, a feature folder) and the client in another subprocess. Prints the file's size, the upload's time, the
peak RSS of the server and of the client before and after, and what was stored.

    python benchmarks/bench_big_upload.py [--format safetensors|npz|npz-compressed|pt] [--questions 1000]

Needs about 3 x the file's size on the temporary disk (the file, the received body while it is checked,
the stored layer files)."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
SERVER = textwrap.dedent("""
    import sys, uvicorn
    from app.server import create_app
    uvicorn.run(create_app(with_ui=False), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")
CLIENT = textwrap.dedent("""
    import sys, time
    from app.client import PidflowClient
    def peak():  # KiB; VmHWM starts afresh at exec (ru_maxrss may carry the forking parent's)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    before = peak()
    start = time.perf_counter()
    with PidflowClient(sys.argv[1]) as client:
        info = client.upload_features(sys.argv[2])
    print(info["id"], info["created"], before, peak(),
          time.perf_counter() - start)
""")


def write_file(path: Path, layers: int, questions: int, hidden: int) -> None:
    """Per-layer float16 arrays in the format of the path's suffix (safetensors, npz, npz-compressed as
    .npzc renamed .npz, pt)."""
    rng = np.random.default_rng(0)
    tensors = {f"{source}.{layer}": rng.standard_normal((questions, hidden), dtype=np.float32).astype(np.float16)
               for source in ("vision", "language") for layer in range(layers)}
    tensors["target"] = rng.standard_normal((questions, 16), dtype=np.float32)
    meta = '{"model": "synthetic-7b", "target": "hidden"}'
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(tensors, str(path), metadata={"meta": meta})
    elif path.suffix == ".npz":
        (np.savez_compressed if "compressed" in path.name else np.savez)(path, **tensors, meta=np.array(meta))
    else:
        import json

        import torch

        torch.save({**{name: torch.from_numpy(value) for name, value in tensors.items()}, "meta": json.loads(meta)}, path)


def vm(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--format", choices=["safetensors", "npz", "npz-compressed", "pt"], default="safetensors")
    args = parser.parse_args()
    from app.redis_local import LocalRedis

    work = Path(tempfile.mkdtemp(prefix="pidflow-big-upload-"))
    suffix = {"safetensors": ".safetensors", "npz": ".npz", "npz-compressed": ".npz", "pt": ".pt"}[args.format]
    path = work / f"llava7b-1000{'-compressed' if args.format == 'npz-compressed' else ''}{suffix}"
    start = time.perf_counter()
    write_file(path, args.layers, args.questions, args.hidden)
    print(f"file: {path.stat().st_size / MIB:.1f} MiB {args.format} ({args.layers} x {args.questions} x "
          f"{args.hidden} x 2, float16), written in {time.perf_counter() - start:.1f} s")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with LocalRedis() as redis_server:
        env = {**os.environ, "REDIS_URL": redis_server.url, "PIDFLOW_FEATURE_DIR": str(work / "features")}
        for name in ("PIDFLOW_FEATURE_DTYPE", "PIDFLOW_MAX_UPLOAD_BYTES"):  # the defaults: 516 MiB goes through
            env.pop(name, None)
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=ROOT)
        try:
            import httpx

            for _ in range(300):
                try:
                    httpx.get(url + "/api/v1/healthz", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            warm = work / "warm.safetensors"
            from safetensors.numpy import save_file

            save_file({"vision": np.ones((3, 8, 4), np.float16) + np.arange(32, dtype=np.float16).reshape(1, 8, 4),
                       "language": np.arange(96, dtype=np.float32).reshape(3, 8, 4), "target": np.eye(8, 2)},
                      str(warm))
            subprocess.run([sys.executable, "-c", CLIENT, url, str(warm)], cwd=ROOT, check=True, capture_output=True)
            before, base = vm(server.pid, "VmHWM"), vm(server.pid, "VmRSS")
            run = subprocess.run([sys.executable, "-c", CLIENT, url, str(path)], cwd=ROOT, capture_output=True,
                                 text=True)
            if run.returncode:
                raise SystemExit(run.stderr)
            sha, created, client_before, client_after, seconds = run.stdout.split()
            after = vm(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(10)
    stored = work / "features" / f"upload{sha}" / "baseline"
    stored_bytes = sum(p.stat().st_size for p in stored.rglob("*") if p.is_file())
    layer = np.load(stored / "vision" / "000.npy", mmap_mode="r")
    print(f"upload (client POST to answer: stream, check, store): {float(seconds):.1f} s, created={created}")
    print(f"server peak RSS: {before:.0f} MiB before, {after:.0f} MiB after (+{after - before:.1f} MiB; "
          f"RSS at rest {base:.0f} MiB)")
    print(f"client peak RSS: {int(client_before) / 1024:.0f} MiB before, {int(client_after) / 1024:.0f} MiB after "
          f"(+{(int(client_after) - int(client_before)) / 1024:.1f} MiB)")
    print(f"stored: {stored_bytes / MIB:.1f} MiB in {stored} (layer files {layer.dtype})")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
