"""Nothing left behind in the feature folder (issue 19.5), with a real Redis and real workers: a running
analysis deleted, an analysis that fails, and jobs whose keys expired leave no files; the heartbeat's
sweep removes what those paths missed and never touches a queued or running job's or study's folder, nor
a failed study's within its resume period."""

from __future__ import annotations

import os
import time

import pytest

from app.service import AnalysisService
from app.settings import Settings
from tests.worker.test_bounded_work import BUSY, NO_PRELOAD, _in_analyze
from tests.worker.test_recovery import _until
from tests.worker.test_study_shards import STUDY
from worker import feature_store, jobs, studies
from worker.heartbeat import Heartbeat
from worker.uploads import FILES_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture
def volume(tmp_path, monkeypatch, redis_server):
    folder = tmp_path / "features"
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(folder))
    return folder


def _files(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) \
        if folder.exists() else []


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_deleted_running_analysis_and_a_failed_one_leave_no_files(start_worker, volume, redis_server, client):
    worker = start_worker("lifecycle", PIDFLOW_FEATURE_DIR=str(volume), PIDFLOW_TASK_TIME_LIMIT_S="12",
                          **NO_PRELOAD)
    service = AnalysisService(Settings(redis_url=redis_server.url))
    doomed = jobs.submit({**BUSY, "bootstrap": 200_000, "seed": 61})  # minutes of bootstrap
    _until(lambda: _in_analyze(client, doomed.id), 90, "the bootstrap to start", poll_s=0.05)
    assert {"baseline/manifest.json", "baseline/answers.npz"} <= set(_files(volume / doomed.id))
    assert service.delete(doomed.id) is True  # open mode: the analysis id is the job id
    assert not (volume / doomed.id).exists(), "the delete removes the running analysis's folder at once"
    # how soon it stops is test_bounded_work's; here what matters is the files (30 s: a loaded CI machine)
    _until(lambda: "skipped (deleted, restarted or finished)" in worker.log(), 30, "the task to stop")
    assert _files(volume) == []

    failing = jobs.submit({**BUSY, "bootstrap": 200_000, "seed": 62})  # over the 12 s limit in analyze
    _until(lambda: _in_analyze(client, failing.id), 90, "the bootstrap to start", poll_s=0.05)
    assert (volume / failing.id / "baseline" / "manifest.json").is_file()
    _until(lambda: jobs.status(failing.id).state == "failed", 60, "the job to fail", poll_s=0.1)
    info = jobs.status(failing.id)
    assert "ran longer than 12 s (PIDFLOW_TASK_TIME_LIMIT_S)" in info.error
    assert _files(volume) == [] and not (volume / failing.id).exists(), "a failed job's folder goes with it"


def test_the_sweep_removes_only_what_nothing_needs(volume, client):
    """Folders of every kind, aged past the grace period: the heartbeat's sweep keeps queued and running
    jobs and studies, a failed or cancelled study's within PIDFLOW_STUDY_RESUME_S, uploads with keys, young
    folders and names that are not the store's; it removes expired, deleted, finished and failed jobs' folders,
    and studies' that finished, are gone, or failed or were cancelled before the resume period."""
    client.flushdb()
    now = time.time()
    job = {name: (name * 32)[:32] for name in ("a", "b", "c", "d", "e")}
    client.hset(f"pidflow:job:{job['a']}", mapping={"state": "running", "attempt": "1"})
    client.hset(f"pidflow:job:{job['b']}", mapping={"state": "queued", "attempt": "2"})
    client.hset(f"pidflow:job:{job['c']}", mapping={"state": "failed", "attempt": "1"})
    client.hset(f"pidflow:job:{job['d']}", mapping={"state": "succeeded", "attempt": "1"})
    # job e: its keys expired (or it was deleted)
    study = {name: (name * 32)[:32] for name in ("1", "2", "3", "4", "5", "6", "7")}
    client.hset(f"pidflow:study:{study['1']}", mapping={"state": "running", "updated_at": str(now - 10**7)})
    client.hset(f"pidflow:study:{study['2']}", mapping={"state": "failed", "updated_at": str(now - 3600)})
    client.hset(f"pidflow:study:{study['3']}", mapping={"state": "failed", "updated_at": str(now - 8 * 86400)})
    client.hset(f"pidflow:study:{study['4']}", mapping={"state": "succeeded", "updated_at": str(now)})
    client.hset(f"pidflow:study:{study['5']}", mapping={"state": "cancelled", "updated_at": str(now)})
    client.hset(f"pidflow:study:{study['7']}", mapping={"state": "cancelled", "updated_at": str(now - 8 * 86400)})
    # study 6: gone
    upload = "f" * 64
    client.hset(f"pidflow:upload:{upload}", "info", "{}")
    names = [*job.values(), *(f"{sid}p0" for sid in study.values()), f"{study['1']}p3", FILES_PREFIX + upload,
             "lost+found", "notes"]
    for name in names:
        (volume / name / "baseline").mkdir(parents=True)
        (volume / name / "baseline" / "000.npy").write_bytes(b"x" * 10)
        _age(volume / name, feature_store.SWEEP_GRACE_S + 5)
    young = "9" * 32  # no key, but written a moment ago (a job being created, say)
    (volume / young).mkdir()
    removed = Heartbeat(client, "sweeper", ttl_s=3).sweep()
    kept = {job["a"], job["b"], f"{study['1']}p0", f"{study['1']}p3", f"{study['2']}p0", f"{study['5']}p0",
            FILES_PREFIX + upload, "lost+found", "notes", young}
    assert sorted(p.name for p in volume.iterdir()) == sorted(kept)
    assert sorted(removed) == sorted({*names, young} - kept)
    # the resume period is a setting: at an hour, the failed study of an hour ago goes too
    resume = feature_store.FeatureStoreSettings(directory=volume, resume_s=3000)
    assert feature_store.sweep(client, resume) == [f"{study['2']}p0"]  # the study cancelled just now stays
    assert feature_store.FeatureStoreSettings.from_env({"PIDFLOW_STUDY_RESUME_S": "60"}).resume_s == 60
    assert feature_store.FeatureStoreSettings.from_env({}).resume_s == 7 * 86400


def test_a_live_studys_folder_survives_the_sweep(start_worker, volume, client):
    """A sharded study on a real worker, swept without any grace period every 50 ms while it runs: its
    stored shards stay, the study succeeds, and its folders are gone once it has."""
    client.flushdb()
    start_worker("study-swept", PIDFLOW_FEATURE_DIR=str(volume), PIDFLOW_EXTRACT_SHARD="16", **NO_PRELOAD)
    study_id = studies.submit(dict(STUDY))["id"]
    seen, swept = set(), []
    deadline = time.monotonic() + 180
    while (state := studies.status(study_id)["state"]) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the study did not finish"
        seen |= {p.name for p in volume.iterdir()} if volume.exists() else set()
        swept += feature_store.sweep(client, grace_s=-1)
        time.sleep(0.05)
    assert state == "succeeded", studies.status(study_id)["error"]
    assert f"{study_id}p0" in seen, "the study stored its shards as files"
    assert swept == []
    assert _files(volume) == [], "a finished study's folders are removed"


def test_a_cancelled_running_study_keeps_its_extraction_for_a_resume(start_worker, volume, client):
    """DELETE of a running study (worker.studies.cancel, through the service): the shards stored so far stay
    (a re-run reuses them: tests/worker/test_study_resume.py), kept by the sweep for PIDFLOW_STUDY_RESUME_S
    as a failed study's, and removed by it after that period."""
    client.flushdb()
    worker = start_worker("study-cancelled", PIDFLOW_FEATURE_DIR=str(volume), PIDFLOW_EXTRACT_SHARD="16",
                          **NO_PRELOAD)
    service = AnalysisService(Settings(redis_url=os.environ["REDIS_URL"]))
    study_id = studies.submit(dict(STUDY))["id"]
    _until(lambda: any((volume / f"{study_id}p0").glob("s*r*/manifest.json")), 120, "a shard stored as files",
           poll_s=0.01)
    assert service.cancel_study(study_id)["state"] == "cancelled"
    _until(lambda: "skipped (cancelled, deleted, restarted or finished)" in worker.log(), 60, "the task to stop")
    left = _files(volume)
    assert any(name.endswith("manifest.json") for name in left) and all(name.startswith(f"{study_id}p0/") for name in left), left
    assert feature_store.sweep(client, grace_s=-1) == [], "kept within the resume period"
    assert _files(volume) == left
    expired = feature_store.FeatureStoreSettings(directory=volume, resume_s=0)
    assert feature_store.sweep(client, expired, grace_s=-1) == [f"{study_id}p0"]
    assert _files(volume) == [] and not any(volume.iterdir())
