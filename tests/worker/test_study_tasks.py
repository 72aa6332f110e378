"""Study tasks against a real Redis, without a model: a part whose worker keeps dying fails the study with
a readable reason instead of being redelivered for ever; status of an unknown study is a KeyError."""

from __future__ import annotations

import json
import time

import pytest

from pidcore.study.run import default_request


def test_a_part_started_too_often_fails_the_study(redis_server, client):
    from worker import studies, study_tasks

    study_id = "s" + "0" * 31
    names = studies.keys(study_id)
    request = default_request(tasks=["shape"])
    client.hset(names["study"], mapping={"id": study_id, "state": "running", "progress": "0", "message": "",
                                         "error": "", "request": json.dumps(request.to_dict()), "attempt": "1",
                                         "total": "1", "created_at": str(time.time()), "updated_at": str(time.time()),
                                         "deliveries:0": str(study_tasks.MAX_DELIVERIES)})
    study_tasks.study_part.run(study_id, "1", 0)  # the task body, in this process
    info = studies.status(study_id)
    assert info["state"] == "failed"
    assert "started 4 times and its worker was lost each time" in info["error"]
    assert info["error"].startswith("part demo · shape failed: study part failed: RuntimeError: part demo · shape "
                                    "was started 4 times")
    assert info["parts"] == [{"model": "demo", "task": "shape", "progress": 0.0, "stage": "failed", "analyses": None,
                              "message": "study part failed: RuntimeError: part demo · shape was started 4 times and "
                                         "its worker was lost each time (killed, or out of memory?)"}]
    with pytest.raises(studies.StudyNotReady, match="failed"):
        studies.report(study_id)
    with pytest.raises(KeyError):
        studies.status("nosuchstudy")
