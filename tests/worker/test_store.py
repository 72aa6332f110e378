"""The Redis job store and `worker.jobs` without a worker: ids, dedup, restart of a failed job, batches
landing once, finalize queued once, results written once, stale attempts ignored, validation errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import redis

from worker import jobs
from worker.cache import JobStore, connect, job_id_for
from worker.revision import UNRESOLVED, model_revision
from worker.settings import WorkerSettings


@pytest.fixture
def store(redis_server, client):
    settings = WorkerSettings.from_env({"REDIS_URL": redis_server.url})
    made = JobStore(connect(settings), settings)
    yield made
    for key in client.scan_iter("pidflow:*:test-*"):
        client.delete(key)


def test_job_id_depends_on_request_revision_and_code_version():
    base = job_id_for("c" * 64, "local-1", "0.1.0")
    assert base == job_id_for("c" * 64, "local-1", "0.1.0") and len(base) == 32 and base.isalnum()
    assert len({base, job_id_for("d" * 64, "local-1", "0.1.0"), job_id_for("c" * 64, "local-2", "0.1.0"),
                job_id_for("c" * 64, "local-1", "0.2.0")}) == 4


def test_create_dedups_and_a_failed_job_restarts_under_the_same_id(store):
    assert store.create("test-a", "{}", "r") == ("new", "1")
    assert store.create("test-a", "{}", "r") == ("existing", "1")
    assert store.fail("test-a", "1", "boom: out of memory")
    job = store.get("test-a")
    assert job["state"] == "failed" and job["error"] == "boom: out of memory"
    assert store.create("test-a", "{}", "r") == ("new", "2")
    job = store.get("test-a")
    assert (job["state"], job["error"], job["progress"]) == ("queued", "", "0")
    assert not store.fail("test-a", "1", "late failure of the old attempt")  # stale attempt: ignored
    assert store.get("test-a")["state"] == "queued"


def test_progress_only_grows_and_stops_after_delete(store):
    store.create("test-p", "{}", "r")
    assert store.progress("test-p", "1", "extract", 0.2, "a")
    assert store.progress("test-p", "1", "extract", 0.1, "b")  # lower: kept at 0.2
    job = store.get("test-p")
    assert (job["state"], job["progress"], job["message"]) == ("running", "0.2000", "a")
    assert not store.progress("test-p", "2", "extract", 0.5, "wrong attempt")
    assert store.delete("test-p") and not store.delete("test-p")
    assert not store.progress("test-p", "1", "extract", 0.5, "gone")
    assert store.get("test-p") is None


def test_batches_land_once_and_exactly_one_lander_queues_finalize(store):
    store.create("test-b", "{}", "r")
    assert store.put("test-b", "1", "job", {"total": "8"}) == 1
    outcomes = []

    def land(index):
        outcomes.append(store.land("test-b", "1", f"baseline:{index}", json.dumps([index])))

    threads = [threading.Thread(target=land, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(done for _, done, _ in outcomes) == list(range(1, 9))
    assert [go for _, _, go in outcomes].count(True) == 1
    assert store.land("test-b", "1", "baseline:3", json.dumps(["other"])) == (0, 8, True)  # redelivered, no result yet
    assert json.loads(store.has_batch("test-b", "baseline:3")) == [3]  # first value kept
    assert store.finish("test-b", "1", '{"doc": 1}') == 1
    assert store.finish("test-b", "1", '{"doc": 2}') == -1  # finished: nothing written twice
    assert store.result("test-b") == b'{"doc": 1}'
    job = store.get("test-b")
    assert (job["state"], job["progress"], job["results_written"]) == ("succeeded", "1", "1")
    assert store.batches("test-b") == {} and store.land("test-b", "1", "baseline:0", "[]")[0] == -1


def test_part_progress_sums_landed_batches_and_fractions_in_flight(store):
    store.create("test-f", "{}", "r")
    store.put("test-f", "1", "job", {"total": "4"})
    assert store.part("test-f", "1", "baseline:0", 0.5) == pytest.approx(0.5)
    assert store.part("test-f", "1", "baseline:1", 0.25) == pytest.approx(0.75)
    store.land("test-f", "1", "baseline:0", "[]")
    assert store.part("test-f", "1", "baseline:1", 0.5) == pytest.approx(1.5)
    assert store.part("test-f", "2", "baseline:1", 0.5) is None


def test_submit_validates_and_unknown_ids_raise(redis_server):
    with pytest.raises(ValueError, match="n_questions"):
        jobs.submit({"n_questions": 0})
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        jobs.submit({"colour": "red"})
    with pytest.raises(ValueError, match="neither 'demo'"):
        jobs.submit({"model": "no-such-model"})
    for call in (jobs.status, jobs.result, jobs.request):
        with pytest.raises(KeyError):
            call("0" * 32)
        with pytest.raises(KeyError):
            call("../etc")
    assert jobs.delete("0" * 32) is False


def test_a_queued_job_has_no_result_and_the_same_request_shares_its_id(redis_server):
    request = {"n_questions": 30, "seed": 990, "gaussianize": False}
    first = jobs.submit(request)
    try:
        assert (first.state, first.stage, first.progress, first.cached) == ("queued", "queued", 0.0, False)
        probe = jobs._context()[1].keys(first.id)["probe"]
        jobs._context()[1].redis.set(probe, b"kept features", ex=5)
        assert jobs.submit(dict(request)).id == first.id
        assert jobs._context()[1].redis.ttl(probe) > 5  # resubmitting refreshes the kept features' TTL too
        kept = jobs.request(first.id)  # the canonical request, defaults filled (what the list of analyses shows)
        assert (kept["n_questions"], kept["seed"], kept["model"], kept["knockout"]) == (30, 990, "demo", None)
        assert jobs.submit({**request, "seed": 991}).id != first.id
        with pytest.raises(jobs.JobNotReady) as caught:
            jobs.result(first.id)
        assert caught.value.info.state == "queued"
    finally:
        jobs.delete(first.id)
        jobs.delete(jobs.submit({**request, "seed": 991}).id)
    with pytest.raises(KeyError):
        jobs.status(first.id)


def test_model_revision_of_folders_and_hugging_face_ids(tmp_path, monkeypatch):
    assert model_revision("demo").startswith("local-")
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        model_revision(str(folder))
    (folder / "config.json").write_text('{"model_type": "llava"}')
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    first = model_revision(str(folder))
    (folder / "model.safetensors").write_bytes(b"x" * 11)
    assert first.startswith("local-") and model_revision(str(folder)) != first
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_revision("org/absent") == UNRESOLVED
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--name" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--name" / "refs" / "main").write_text("ab" * 20)
    assert model_revision("org/name") == "ab" * 20
    with pytest.raises(ValueError):
        model_revision("/not/a/folder")


def test_task_writes_wait_for_redis_and_publishing_to_come_back():
    from kombu.exceptions import OperationalError

    from worker.cache import retrying
    from worker.tasks import LOST_REDIS

    failures = [OperationalError("Error 111 connecting. Connection refused."),
                redis.exceptions.ConnectionError("Connection refused")]

    def flaky(value):
        if failures:
            raise failures.pop()
        return value

    assert retrying(flaky, 7, wait_s=5, errors=LOST_REDIS) == 7 and not failures

    def down():
        raise redis.exceptions.ConnectionError("still down")

    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match="still down"):
        retrying(down, wait_s=1.0)
    assert 0.5 < time.monotonic() - started < 2.0
    with pytest.raises(ValueError):  # anything else is not retried
        retrying(int, "x", wait_s=5)


def test_model_revision_is_torch_free_and_the_adapters_own():
    script = ("import sys\nfrom worker.revision import model_revision\nfirst = model_revision('demo')\n"
              "print('torch' in sys.modules)\n"
              "from pidcore.demo import demo_model_path\nfrom pidcore.extract.adapters import folder_revision\n"
              "print(first == folder_revision(demo_model_path()), first)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    torch_loaded, same, revision = out.stdout.split()
    assert torch_loaded == "False" and same == "True" and revision.startswith("local-")


def test_worker_settings_from_env_read_numbers_and_name_bad_ones():
    settings = WorkerSettings.from_env({"PIDFLOW_VISIBILITY_TIMEOUT_S": "60", "PIDFLOW_REDIS_TIMEOUT_S": "0.5",
                                        "PIDFLOW_LAYER_BATCH": "", "PIDFLOW_WORKER_PRELOAD": "0"})
    assert settings.visibility_timeout_s == 60 and settings.restore_interval_s == 10
    assert settings.stale_s == 7800  # at least 2 h 10 min: a running job's batches may wait in a long queue
    assert WorkerSettings.from_env({"PIDFLOW_VISIBILITY_TIMEOUT_S": "4000"}).stale_s == 2 * 4000 + 600
    defaults = WorkerSettings.from_env({})
    assert (defaults.visibility_timeout_s, defaults.task_time_limit_s) == (30, 7200)  # leases renewed by beats
    assert settings.socket_timeout_s == 0.5 and settings.layer_batch == 8 and settings.preload == ()
    with pytest.raises(ValueError, match="PIDFLOW_LAYER_BATCH must be an integer, got '2.5'"):
        WorkerSettings.from_env({"PIDFLOW_LAYER_BATCH": "2.5"})
    with pytest.raises(ValueError, match="PIDFLOW_REDIS_TIMEOUT_S must be a number, got 'soon'"):
        WorkerSettings.from_env({"PIDFLOW_REDIS_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="PIDFLOW_HEARTBEAT_TTL_S must be >= 0.3, got 0.1"):
        WorkerSettings.from_env({"PIDFLOW_HEARTBEAT_TTL_S": "0.1"})


def test_queue_position_counts_the_extractions_ahead(redis_server, client, monkeypatch):
    """Kombu pushes on the left of the `gpu` list and workers pop on the right: what is to the right waits
    ahead. A job whose task is not waiting there has no position."""
    from worker.celery_app import EXTRACT, QUEUES

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    queue = QUEUES[EXTRACT]
    client.delete(queue)
    for job_id in ("first", "second", "third"):  # sent in this order
        client.lpush(queue, json.dumps({"headers": {"argsrepr": f"['{job_id}', '1']"}, "body": "e30="}))
    try:
        assert [jobs.queue_position(job_id) for job_id in ("first", "second", "third")] == [0, 1, 2]
        assert jobs.queue_position("elsewhere") is None
    finally:
        client.delete(queue)
