"""Resumable studies and failures (issue 17.6), against a real Redis with the task bodies in this process: an
error in one part's analysis fails that part only (the other part finishes and stays; the study says which
part failed and why); submitting the same study again reuses the stored extraction, the plan and every
landed analysis of the failed part, runs only the missing analysis, and the report equals run_study."""

from __future__ import annotations

import json

import pytest

from tests.worker.test_study_cpu_analyses import BODIES, _reference, _same_report, sent  # noqa: F401
from worker import studies

STUDY = {"models": ["demo"], "tasks": ["shape", "color"], "n_questions": 48, "recipes": ["pidflow"],
         "gaussianize": "none", "dims": [2, 2, 2], "bootstrap": 0, "seed": 2, "seed_cut": True, "sweep": None}


def _drain(sent) -> list[str]:  # noqa: F811
    ran = []
    while sent:
        name, args = sent.pop(0)
        ran.append(name)
        BODIES[name](*args)
    return ran


@pytest.mark.parametrize("shard", ["0", "16"])
def test_a_failed_part_says_why_and_a_rerun_runs_only_what_is_missing(sent, client, monkeypatch, shard):  # noqa: F811
    import pidcore.study.run as study_run

    monkeypatch.setenv("PIDFLOW_EXTRACT_SHARD", shard)
    monkeypatch.setenv("PIDFLOW_LAYER_BATCH", "3")
    real = study_run.analyse_unit

    def broken(request, model, task, plan, features, unit, progress=None):
        if task == "color" and unit == 1:
            raise RuntimeError("boom in one analysis")
        return real(request, model, task, plan, features, unit, progress=progress)

    monkeypatch.setattr(study_run, "analyse_unit", broken)
    study_id = studies.submit(dict(STUDY))["id"]
    _drain(sent)
    info = studies.status(study_id)
    assert info["state"] == "failed"
    assert info["error"] == ("part demo · color failed: study analysis failed: RuntimeError: boom in one analysis. "
                             "1 of 2 parts finished and are kept: submit the same study again to run only the "
                             "missing parts")
    assert [(p["task"], p["stage"], p["message"]) for p in info["parts"]] == [
        ("shape", "done", "done"),
        ("color", "failed", "study analysis failed: RuntimeError: boom in one analysis")]
    units = json.loads(client.hget(studies.keys(study_id)["study"], "plan:1"))["units"]
    # batches of 3 layers: the baseline's 7 layers in 3 units, the seed cut's 6 (layers 1-6 differ) in 2
    assert [(key, layers) for _, key, layers in units] == [
        ("baseline", [0, 1, 2]), ("baseline", [3, 4, 5]), ("baseline", [6]),
        ("image->question@0-5", [1, 2, 3]), ("image->question@0-5", [4, 5, 6])]
    # unit 0 landed and stays; the part's units still queued when it failed stop (the study has failed)
    landed = sorted(int(k) for k in client.hkeys(studies.layers_key(study_id, 1)))
    assert landed == [0]

    monkeypatch.setattr(study_run, "analyse_unit", real)
    again = studies.submit(dict(STUDY))
    assert again["id"] == study_id and again["state"] == "queued"
    assert [p["progress"] for p in again["parts"]] == [1.0, 0.0]
    ran = _drain(sent)
    # no extraction again (the stored runs are reused), the plan is kept, only the failed analysis runs
    assert ran == [studies.STUDY_PART, studies.STUDY_PREPARE, *[studies.STUDY_ANALYZE] * 4, studies.STUDY_FINALIZE]
    state = {k.decode(): v.decode() for k, v in client.hgetall(studies.keys(study_id)["study"]).items()}
    assert state["attempt"] == "2" and "deliveries:1" not in state and "deliveries:1:prepare" not in state
    assert not [k for k in state if ":shard:" in k], "no shard extracted again"
    assert sorted(k for k in state if k.startswith("deliveries:1:unit:")) == [f"deliveries:1:unit:{u}" for u in (1, 2, 3, 4)]
    assert studies.status(study_id)["state"] == "succeeded"
    _same_report(studies.report(study_id), _reference(STUDY))


@pytest.mark.parametrize("shard", ["0", "16"])
def test_a_rerun_after_a_cancel_reuses_the_stored_extraction(sent, client, monkeypatch, shard):  # noqa: F811
    """DELETE /api/v1/studies/{id} (worker.studies.cancel) once part 0 is extracted, planned and one of its
    analyses landed, before part 1 started: submitting the study again extracts only part 1 (part 0's stored
    runs, whole or merged from shards, its plan and its landed analysis are reused) and the report equals
    run_study."""
    import pidcore.study.run as study_run

    monkeypatch.setenv("PIDFLOW_EXTRACT_SHARD", shard)
    monkeypatch.setenv("PIDFLOW_LAYER_BATCH", "3")
    real, extracted = study_run.extract_questions, []

    def counted(request, model, task, *args, **kwargs):
        extracted.append((task, args[:2]))
        return real(request, model, task, *args, **kwargs)

    monkeypatch.setattr(study_run, "extract_questions", counted)
    study_id = studies.submit(dict(STUDY))["id"]
    queued_part_1 = [message for message in sent if message[1][2] == 1]
    sent[:] = [message for message in sent if message[1][2] == 0]
    while not client.hlen(studies.layers_key(study_id, 0)):  # part 0 until its first analysis has landed
        name, args = sent.pop(0)
        BODIES[name](*args)
    assert client.hlen(studies.layers_key(study_id, 0)) == 1 and sent, "part 0 has analyses left"
    first = len(extracted)
    assert {task for task, _ in extracted} == {"shape"} and first == (1 if shard == "0" else 3)
    assert studies.cancel(study_id)["state"] == "cancelled"
    sent.clear()
    assert queued_part_1  # never run: part 1 is extracted only by the re-run

    again = studies.submit(dict(STUDY))
    assert again["id"] == study_id and again["state"] == "queued"
    ran = _drain(sent)
    assert {task for task, _ in extracted[first:]} == {"color"}, "part 0 was not extracted again"
    assert len(extracted) - first == first
    state = {k.decode(): v.decode() for k, v in client.hgetall(studies.keys(study_id)["study"]).items()}
    assert state["attempt"] == "2" and "deliveries:0" not in state, "part 0's extraction task found its runs stored"
    assert "deliveries:0:prepare" not in state, "part 0's plan was kept"
    assert "deliveries:0:unit:0" not in state, "part 0's landed analysis was kept"
    assert ran.count(studies.STUDY_FINALIZE) == 1
    assert studies.status(study_id)["state"] == "succeeded"
    _same_report(studies.report(study_id), _reference(STUDY))
