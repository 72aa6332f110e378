"""Features files: how long writing, checking, uploading (HTTP, real Redis) and a worker's read take.

    python benchmarks/bench_features.py [--layers 33] [--questions 400] [--hidden 1024] [--format safetensors]

Random float16 states of the given shape (vision and language), a 13-answer log-probability target. Prints
seconds and MB/s per step. Uploads go to an in-process API (uvicorn thread) on a private redis-server.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis

from app.redis_local import LocalRedis
from app.served import in_thread
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from pidcore.features.files import read_features, write_features
from worker.uploads import UploadStore


def timed(label: str, size_mb: float, fn):
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<38} {seconds:7.2f} s   {size_mb / seconds:8.1f} MB/s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--format", choices=["npz", "safetensors", "pt"], default="safetensors")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (args.layers, args.questions, args.hidden)
    vision = rng.normal(size=shape).astype(np.float16)
    language = rng.normal(size=shape).astype(np.float16)
    target = np.log(rng.dirichlet(np.ones(13), size=args.questions)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder, LocalRedis() as local:
        path = Path(folder) / f"bench.{args.format}"
        in_mb = (vision.nbytes + language.nbytes) / 1e6
        print(f"states {shape} x 2 float16 = {in_mb:.1f} MB; format {args.format}")
        timed("write_features (writes, reads back)", in_mb,
              lambda: write_features(path, vision=vision, language=language, target=target))
        size_mb = path.stat().st_size / 1e6
        print(f"file: {size_mb:.1f} MB")
        feature_set = timed("read_features (parse and check)", size_mb, lambda: read_features(path))
        settings = Settings(redis_url=local.url, max_upload_bytes=4 * path.stat().st_size)
        client = redis.Redis.from_url(local.url)
        service = AnalysisService(settings, jobs=object(), redis_client=client)
        with in_thread(create_app(service=service, with_ui=False)) as url:
            body = path.read_bytes()
            response = timed("POST /api/v1/features (new file)", size_mb, lambda: httpx.post(
                f"{url}/api/v1/features", content=body, params={"filename": path.name}, timeout=600))
            assert response.status_code == 201, response.text
            again = timed("POST /api/v1/features (known file)", size_mb, lambda: httpx.post(
                f"{url}/api/v1/features", content=body, params={"filename": path.name}, timeout=600))
            assert again.status_code == 200
        stored_mb = client.memory_usage(f"pidflow:upload:{feature_set.sha256}") / 1e6
        print(f"stored in Redis: {stored_mb:.1f} MB")
        loaded = timed("worker read (UploadStore.feature_set)", stored_mb,
                       lambda: UploadStore(client).feature_set(feature_set.sha256))
        assert loaded.features.vision.shape == shape


if __name__ == "__main__":
    main()
