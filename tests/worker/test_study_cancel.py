"""Cancel and time limit of a study (issue 18.1), against a real Redis with the workers' task bodies run in
this process on the demo model: DELETE /api/v1/studies/{id} and the Studies tab's Cancel stop a running part
at its next progress step and a queued one before it starts; the part that finished stays, and submitting the
study again resumes with only the missing part. A part over PIDFLOW_TASK_TIME_LIMIT_S fails the study."""

from __future__ import annotations

import threading
import time

import pytest

SMALL = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 60, "dims": [2, 2, 2], "bootstrap": 0,
         "gaussianize": "none", "recipes": ["pidflow"], "seed_cut": False, "sweep": None}


@pytest.fixture
def sent(monkeypatch, redis_server, client):
    """The tasks the study layer queues, recorded instead of published (this test runs their bodies)."""
    import worker.celery_app
    from worker import study_tasks

    client.flushdb()
    calls = []
    record = lambda name, args, redis_url=None: calls.append((name, args))  # noqa: E731
    monkeypatch.setattr(worker.celery_app, "send", record)
    monkeypatch.setattr(study_tasks, "send", record)
    return calls


def _run_part(sent, study_id: str, attempt: str, index: int) -> None:
    """Part `index`'s GPU task, then the cpu tasks it queues (plan, analyses), in this process."""
    from worker import studies, study_tasks

    bodies = {studies.STUDY_PREPARE: study_tasks.study_prepare.run, studies.STUDY_ANALYZE: study_tasks.study_analyze.run}
    start = len(sent)
    study_tasks.study_part.run(study_id, attempt, index)
    position = start
    while position < len(sent):
        name, args = sent[position]
        position += 1
        if name in bodies and args[2] == index:
            bodies[name](*args)


def _wait(predicate, what: str, timeout_s: float = 120.0) -> None:
    """Poll until predicate() holds (a generous bound against a hang, not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_cancel_stops_the_running_part_and_keeps_the_finished_one(sent, client, redis_server):
    from app.ui import study_callbacks
    from tests.service.test_api_routes import make_client
    from worker import studies, study_tasks

    api = make_client(redis_server.url)
    info = api.post("/api/v1/studies", json=SMALL).json()
    study_id, attempt = info["id"], client.hget(studies.keys(info["id"])["study"], "attempt").decode()
    assert [name for name, _ in sent] == [studies.STUDY_PART] * 2

    _run_part(sent, study_id, attempt, 0)  # part 0 (shape) finishes (extracted, then analysed)
    assert client.hexists(studies.keys(study_id)["study-parts"], "0")

    running = threading.Thread(target=study_tasks.study_part.run, args=(study_id, attempt, 1), daemon=True)
    running.start()  # part 1 (color) runs: wait until it reports progress, then cancel it through the API
    _wait(lambda: client.hexists(studies.keys(study_id)["study-progress"], "1"), "part 1 to start")
    cancelled = api.delete(f"/api/v1/studies/{study_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    running.join(120)
    assert not running.is_alive()  # it stopped at its next progress step instead of running to the end

    status = api.get(f"/api/v1/studies/{study_id}").json()
    assert status["state"] == "cancelled"
    assert [(p["task"], p["progress"], p["message"]) for p in status["parts"]] == [
        ("shape", 1.0, "done"), ("color", 0.0, "cancelled")]
    assert not client.hexists(studies.keys(study_id)["study-parts"], "1")  # nothing of the stopped part landed
    assert api.get(f"/api/v1/studies/{study_id}/report").status_code == 409
    page = api.get(f"/study/{study_id}")
    assert page.status_code == 200 and "cancelled" in page.text and "http-equiv='refresh'" not in page.text

    # a queued part taken up after the cancel does nothing
    study_tasks.study_part.run(study_id, attempt, 1)
    assert not client.hexists(studies.keys(study_id)["study-parts"], "1")

    sent.clear()  # submitting it again resumes: only the missing part is queued, the finished one is kept
    again = api.post("/api/v1/studies", json=SMALL).json()
    assert again["id"] == study_id and again["state"] == "queued"
    assert [(name, args[2]) for name, args in sent] == [(studies.STUDY_PART, 1)]
    assert [p["progress"] for p in again["parts"]] == [1.0, 0.0]

    # the Studies tab's Cancel: the same service call; a second cancel says there is nothing left to stop
    said = study_callbacks.cancel(api.app.state.service, f"/study/{study_id}")
    assert said.startswith(f"Study {study_id} cancelled") and "1 of 2 parts had finished and are kept" in said
    assert study_callbacks.cancel(api.app.state.service, study_id) == \
        f"Study {study_id} is cancelled: nothing to cancel."
    assert api.delete("/api/v1/studies/" + "0" * 32).status_code == 404


def test_a_hosted_study_is_cancelled_only_by_a_token_that_submitted_it(sent, client, redis_server):
    from tests.service.test_api_routes import make_client

    api = make_client(redis_server.url, api_tokens=("alpha", "beta"), rate_limit_per_minute=1000)
    alpha = api.post("/api/v1/studies", json=SMALL, headers={"Authorization": "Bearer alpha"}).json()["id"]
    beta = api.post("/api/v1/studies", json=SMALL, headers={"Authorization": "Bearer beta"}).json()["id"]
    assert alpha != beta
    assert api.delete(f"/api/v1/studies/{alpha}").status_code == 401
    refused = api.delete(f"/api/v1/studies/{alpha}", headers={"Authorization": "Bearer beta"})
    assert refused.status_code == 403 and "only the token that submitted a study may cancel it" in refused.text
    # alpha withdraws: beta's submission of the same study runs on
    assert api.delete(f"/api/v1/studies/{alpha}", headers={"Authorization": "Bearer alpha"}).status_code == 200
    assert api.get(f"/api/v1/studies/{beta}").json()["state"] == "queued"
    assert api.get(f"/api/v1/studies/{alpha}").status_code == 404
    # beta, the last holder, cancels it
    assert api.delete(f"/api/v1/studies/{beta}", headers={"Authorization": "Bearer beta"}).json()["state"] == "cancelled"
    assert api.get(f"/api/v1/studies/{beta}").json()["state"] == "cancelled"


def test_the_task_time_limit_applies_to_study_parts(sent, client, redis_server, monkeypatch):
    from worker import studies, study_tasks
    from worker.settings import WorkerSettings

    info = studies.submit(SMALL)
    attempt = client.hget(studies.keys(info["id"])["study"], "attempt").decode()
    limited = WorkerSettings.from_env({"REDIS_URL": redis_server.url, "PIDFLOW_TASK_TIME_LIMIT_S": "1"})
    monkeypatch.setattr(study_tasks.WorkerSettings, "from_env", classmethod(
        lambda cls, env=None: WorkerSettings(**{**limited.__dict__, "task_time_limit_s": 0})))
    study_tasks.study_part.run(info["id"], attempt, 0)
    status = studies.status(info["id"])
    assert status["state"] == "failed"
    assert status["error"].startswith("the study task for demo · shape ran longer than 0 s (PIDFLOW_TASK_TIME_LIMIT_S)")


@pytest.mark.slow
def test_a_real_worker_stops_the_cancelled_part_and_keeps_the_finished_one(start_worker, client, redis_server):
    """One Celery worker takes the two parts in turn; DELETE while the second runs: it stops at its next
    progress step (the worker logs the skip), the first part stays, the study reads cancelled."""
    from tests.service.test_api_routes import make_client
    from worker import studies

    client.flushdb()
    worker = start_worker("study-cancel", PIDFLOW_WORKER_PRELOAD="0")
    api = make_client(redis_server.url)
    study_id = api.post("/api/v1/studies", json=SMALL).json()["id"]
    names = studies.keys(study_id)
    _wait(lambda: client.hexists(names["study-parts"], "0") and client.hexists(names["study-progress"], "1"),
          "part 0 done and part 1 running", timeout_s=240)
    assert api.delete(f"/api/v1/studies/{study_id}").json()["state"] == "cancelled"
    _wait(lambda: "skipped (cancelled, deleted, restarted or finished)" in worker.log(), "the part to stop")
    status = api.get(f"/api/v1/studies/{study_id}").json()
    assert status["state"] == "cancelled" and [p["message"] for p in status["parts"]] == ["done", "cancelled"]
    assert client.hexists(names["study-parts"], "0") and not client.hexists(names["study-parts"], "1")
    assert not client.exists(names["study-report"])
