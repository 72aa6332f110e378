"""A real server for browser tests and the first-view benchmark: uvicorn + the API's create_app +
the real AnalysisService on a private Redis, with a stand-in job layer that runs for `run_s` seconds
(queued -> running with progress -> succeeded) and returns a known result document."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict

import redis

import app.service as service_module
from app.redis_local import LocalRedis
from app.served import in_thread
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.ui.demo_result import make_document
from worker.jobs import JobInfo

NUM_LAYERS = 6
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class TimedJobs:
    """`worker.jobs` stand-in over Redis: a job succeeds `run_s` after submit; same request -> same id."""

    def __init__(self, client: redis.Redis, run_s: float = 1.5, n_questions: int = 12):
        self.redis, self.run_s, self.n_questions = client, run_s, n_questions

    def submit(self, request: dict) -> JobInfo:
        job_id = "t" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        key = f"timedjobs:{job_id}"
        existed = bool(self.redis.exists(key))
        if not existed:
            self.redis.set(key, json.dumps({"request": request, "created": time.time()}))
        info = self.status(job_id)
        info.cached = existed and info.state == "succeeded"
        return info

    def status(self, job_id: str) -> JobInfo:
        raw = self.redis.get(f"timedjobs:{job_id}")
        if raw is None:
            raise KeyError(f"unknown analysis {job_id!r}")
        entry = json.loads(raw)
        elapsed = time.time() - entry["created"]
        progress = min(1.0, elapsed / self.run_s) if self.run_s > 0 else 1.0
        if progress >= 1.0:
            state, stage = "succeeded", "done"
        else:
            state, stage = ("queued", "queued") if progress < 0.1 else ("running", "analyze")
        return JobInfo(job_id, state, stage, round(progress, 2), None, None, False, entry["created"], time.time())

    def result(self, job_id: str) -> dict:
        info = self.status(job_id)
        if info.state != "succeeded":
            raise service_module.JobNotReady(asdict(info))
        request = json.loads(self.redis.get(f"timedjobs:{job_id}"))["request"]
        return make_document(request, num_layers=NUM_LAYERS, n_questions=self.n_questions,
                             with_ci=bool(request.get("bootstrap")))

    def request(self, job_id: str) -> dict:
        raw = self.redis.get(f"timedjobs:{job_id}")
        if raw is None:
            raise KeyError(f"unknown analysis {job_id!r}")
        return json.loads(raw)["request"]

    def probe_features(self, job_id: str) -> bytes | None:
        """Baseline pooled features of the demo model's shape for a finished job (synthetic: 60 questions)."""
        import numpy as np

        from pidcore.data import answer_set
        from tests.ui.test_own_terms import synthetic

        if self.status(job_id).state != "succeeded":
            return None
        features = synthetic(n=60, layers=NUM_LAYERS + 1, hidden=128)
        answers = answer_set("easy-vqa")
        noise = np.random.default_rng(1).normal(size=(60, len(answers))).astype(np.float32)
        features.answer_set, features.target = np.array(answers), noise + features.target[:, :1]
        return features.to_bytes()

    def delete(self, job_id: str) -> bool:
        return bool(self.redis.delete(f"timedjobs:{job_id}"))


@contextlib.contextmanager
def running_server(run_s: float = 1.5, n_questions: int = 12, **settings):
    """Yield (base_url, service) of a live uvicorn server with API and dashboard."""
    with LocalRedis() as local:
        original = service_module._num_decoder_layers
        service_module._num_decoder_layers = lambda model: NUM_LAYERS
        try:
            client = redis.Redis.from_url(local.url)
            service = AnalysisService(Settings(redis_url=local.url, **settings), jobs=TimedJobs(client, run_s, n_questions),
                                      redis_client=client)
            with in_thread(create_app(service=service)) as url:
                yield url, service
        finally:
            service_module._num_decoder_layers = original


@contextlib.contextmanager
def chromium(profile_dir, width: int = 1366, height: int = 768):
    """A headless Chromium context (Debian's chromium through playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, accept_downloads=True)
        try:
            yield context
        finally:
            context.close()
