"""A stand-in for `worker.jobs` that keeps jobs in a real Redis and finishes them at once (or holds them),
so the API can be tested without the analysis stack. Follows the contract of docs/architecture.md."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

from worker.jobs import JobInfo

FAILING_SEED = 666  # a request with this seed fails, with a readable reason
NUM_LAYERS = 6  # decoder layers of the fake model: runs hold 7 layers (0 = embeddings)


class JobNotReady(Exception):
    pass


def synthetic_result(request: dict, n_questions: int = 5) -> dict:
    """A result document whose numbers follow from the layer and question index (parts sum to total)."""

    def run(offset: float) -> dict:
        layers = []
        for layer in range(NUM_LAYERS + 1):
            parts = [0.1 * layer + offset, 0.2, 0.05 * layer, 0.01 * layer]
            layers.append({"layer": layer, **dict(zip(
                ("redundancy", "unique_vision", "unique_language", "synergy"), parts, strict=True)),
                "total": sum(parts)})
        return {"layers": layers, "accuracy": 0.8, "mean_p_correct": 0.75}

    knockout = request.get("knockout")
    questions = [{"qid": f"easy-vqa.test.{i}", "task": "color", "question": "What color is the shape?",
                  "answer": "red", "image_id": f"easy-vqa.test.{i}",
                  "baseline": {"predicted": "red", "p_correct": 0.9, "correct": True},
                  "knockout": {"predicted": "blue", "p_correct": 0.2, "correct": False} if knockout else None}
                 for i in range(n_questions)]
    pointwise = [[[0.1 * layer, 0.01 * q, 0.0, 0.02] for layer in range(NUM_LAYERS + 1)] for q in range(n_questions)]
    return {"schema": "pidflow.result/1", "request": request,
            "model": {"name": "demo", "revision": "fake", "num_layers": NUM_LAYERS, "hidden_size": 32},
            "code_version": "0.1.0", "n_questions": n_questions,
            "runs": {"baseline": run(0.0), "knockout": run(0.5) if knockout else None},
            "effects": None, "questions": questions,
            "pointwise": {"baseline": pointwise, "knockout": pointwise if knockout else None},
            "timing": {"extract_s": 0.0, "analyze_s": 0.0}}


class FakeJobs:
    """submit/status/result/delete over Redis keys `fakejobs:*`; `hold=True` leaves new jobs queued."""

    JobNotReady = JobNotReady

    def __init__(self, redis_client, hold: bool = False):
        self.redis = redis_client
        self.hold = hold

    def _save(self, info: JobInfo) -> None:
        self.redis.set(f"fakejobs:status:{info.id}", json.dumps(asdict(info)))

    def submit(self, request: dict) -> JobInfo:
        if request.get("n_questions") == 13:  # the job layer's own validation (ValueError) reaches the client
            raise ValueError("the job layer refuses n_questions=13")
        job_id = "a" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:20]
        if self.redis.exists(f"fakejobs:status:{job_id}"):
            info = self.status(job_id)
            info.cached = info.state == "succeeded"
            return info
        self.redis.set(f"fakejobs:request:{job_id}", json.dumps(request))
        now = time.time()
        info = JobInfo(job_id, "queued", "queued", 0.0, None, None, False, now, now)
        if request.get("seed") == FAILING_SEED:
            info.state, info.stage, info.error = "failed", "extract", "synthetic failure: out of memory"
        elif not self.hold:
            self.redis.set(f"fakejobs:result:{job_id}", json.dumps(synthetic_result(request)))
            info.state, info.stage, info.progress = "succeeded", "done", 1.0
        self._save(info)
        return info

    def status(self, job_id: str) -> JobInfo:
        raw = self.redis.get(f"fakejobs:status:{job_id}")
        if raw is None:
            raise KeyError(f"unknown analysis {job_id!r}")
        return JobInfo(**json.loads(raw))

    def result(self, job_id: str) -> dict:
        info = self.status(job_id)
        raw = self.redis.get(f"fakejobs:result:{job_id}")
        if raw is None:
            raise JobNotReady(info.state)
        return json.loads(raw)

    def request(self, job_id: str) -> dict:
        raw = self.redis.get(f"fakejobs:request:{job_id}")
        if raw is None:
            raise KeyError(f"unknown analysis {job_id!r}")
        return json.loads(raw)

    def delete(self, job_id: str) -> bool:
        return bool(self.redis.delete(f"fakejobs:status:{job_id}", f"fakejobs:result:{job_id}",
                                      f"fakejobs:request:{job_id}"))
