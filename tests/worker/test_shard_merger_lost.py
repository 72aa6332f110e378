"""The shard that completes a set claims the merge; if its worker is lost after claiming, the redelivery of
that shard merges again (an analysis and a study part), instead of leaving the job waiting for ever. The
task bodies run in this process against a real Redis; messages are recorded, not sent."""

from __future__ import annotations

import pytest
import torch

from worker import jobs, shards, studies, study_tasks, tasks

REQUEST = {"model": "demo", "tasks": ["shape"], "n_questions": 48, "dims": [2, 2, 2], "gaussianize": "none",
           "bootstrap": 0, "seed": 8, "knockout": {"edges": ["image->question"], "layers": [2, 4]}}
STUDY = {"models": ["demo"], "tasks": ["shape"], "n_questions": 48, "recipes": ["pidflow"], "gaussianize": "none",
         "dims": [2, 2, 2], "bootstrap": 0, "seed": 8, "sweep": None}


@pytest.fixture
def sent(redis_server, monkeypatch):
    """[(task name, args)] of every message the code under test would have sent."""
    import worker.celery_app

    messages = []
    record = lambda name, args, *_: messages.append((name, args))  # noqa: E731
    monkeypatch.setattr(worker.celery_app, "send", record)
    monkeypatch.setattr(tasks, "_send", record)
    monkeypatch.setattr(study_tasks, "send", record)
    monkeypatch.setenv("PIDFLOW_EXTRACT_SHARD", "16")  # three shards
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield messages
    torch.set_num_threads(threads)


class WorkerLost(Exception):
    pass


def _lose_worker(*args, **kwargs):
    raise WorkerLost


def test_an_analysis_merger_lost_after_claiming_is_redone(sent, client, monkeypatch):
    job = jobs.submit(dict(REQUEST))
    raw = {k.decode(): v.decode() for k, v in client.hgetall(f"pidflow:job:{job.id}").items() if k != b"request"}
    assert raw.get("state") == "queued" and not job.cached, f"a fresh job was expected, found {raw}"
    attempt = raw["attempt"]
    tasks._extract(job.id, attempt)
    bounds = [args[2:] for name, args in sent if name == "pidflow.extract_shard"]
    assert bounds == [[0, 0, 16], [1, 16, 32], [2, 32, 48]]
    for index, start, stop in bounds[:2]:
        tasks._extract_shard(job.id, attempt, index, start, stop)
    with monkeypatch.context() as patch:  # shard 2 lands, claims the merge, and its worker dies merging
        patch.setattr(shards, "merge", _lose_worker)
        with pytest.raises(WorkerLost):
            tasks._extract_shard(job.id, attempt, *bounds[2])
    assert client.hget(f"pidflow:job:{job.id}", "merged_by") == b"2"
    assert not client.hexists(f"pidflow:features:{job.id}", "baseline")
    tasks._extract_shard(job.id, attempt, *bounds[2])  # the redelivery
    assert client.hexists(f"pidflow:features:{job.id}", "baseline")
    assert client.hexists(f"pidflow:features:{job.id}", "knockout")
    assert sum(name == "pidflow.analyze" for name, _ in sent) > 0, "the analysis was planned"
    jobs.delete(job.id)


def test_a_study_part_merger_lost_after_claiming_is_redone(sent, client, monkeypatch):
    study_id = studies.submit(dict(STUDY))["id"]
    study_tasks._part(study_id, "1", 0)
    bounds = [args[3:] for name, args in sent if name == "pidflow.study_shard"]
    assert bounds == [[0, 0, 16], [1, 16, 32], [2, 32, 48]]
    for shard in bounds[:2]:
        study_tasks._shard(study_id, "1", 0, *shard, "w1")
    study_tasks._shard(study_id, "1", 0, *bounds[2], "w2")  # completes the set: claims it, queues the plan
    assert client.hget(f"pidflow:study:{study_id}", "merging:0") == b"2"
    assert [name for name, _ in sent][-1] == "pidflow.study_prepare"
    with monkeypatch.context() as patch:  # the cpu task that merges dies merging
        patch.setattr(shards, "merge", _lose_worker)
        with pytest.raises(WorkerLost):
            study_tasks._prepare(study_id, "1", 0)
    assert not client.hexists(f"pidflow:study-features:{study_id}", "0:part")
    assert client.hexists(f"pidflow:study-features:{study_id}", "0:2"), "the shards stay until merged"
    sent.clear()
    study_tasks._prepare(study_id, "1", 0)  # the redelivery merges again, plans and queues the analyses
    assert not client.hexists(f"pidflow:study-features:{study_id}", "0:2"), "merged shards are dropped"
    units = [args for name, args in sent if name == "pidflow.study_analyze"]
    assert units and len(units) == len(sent)
    for args in units:
        study_tasks._analyze(*args)
    assert [name for name, _ in sent][-1] == "pidflow.study_finalize"
    study_tasks._finalize(study_id, "1")
    report = studies.report(study_id)
    assert report["parts"][0]["n_asked"] == 48 and report["headline"][0]["n_questions"] == 48
    assert [(s["questions"], s["worker"]) for s in report["timing"]["shards"]] == [
        ([0, 16], "w1"), ([16, 32], "w1"), ([32, 48], "w2")]
    assert not client.exists(f"pidflow:study-features:{study_id}")
