"""Studies through the same request gate as analyses (issue 18.1, issue 21.2): every refusal of the hosted-mode
table, answered at submission (422 naming the field, 429 over the token's quota or rate, nothing queued), with
the messages analyses give."""

from __future__ import annotations

import pytest
import redis

from app.keys import HANDLE_PREFIX
from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ALPHA = {"Authorization": "Bearer alpha"}
STUDY = {"models": ["demo"], "tasks": ["color"], "n_questions": 120, "recipes": ["pidflow"], "bootstrap": 0}


@pytest.fixture
def api(redis_url, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty model cache: acme/vlm-7b is not in it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, api_tokens=("alpha",), models=("demo", "acme/vlm-7b"), max_bootstrap=200,
                       max_dim=16, max_tasks=2, max_questions=500, rate_limit_per_minute=1000,
                       max_active_per_token=2)


def _queued(api) -> list:
    return redis.Redis.from_url(api.app.state.service.settings.redis_url).keys("pidflow:study:*")


@pytest.mark.parametrize("change, status, field, fragment", [
    ({"models": ["acme/vlm-7b"]}, 422, "models",
     "model 'acme/vlm-7b' is not in this server's model cache, and a hosted server does not download inside a task; "
     "an operator fetches it first: pidflow fetch-model acme/vlm-7b"),
    ({"models": ["llava-hf/llava-1.5-7b-hf"]}, 422, "models",
     "unknown model 'llava-hf/llava-1.5-7b-hf'; configured models: demo, acme/vlm-7b"),
    ({"models": ["demo", "/srv/models/demo/"]}, 422, "models", "unknown model '.../demo/'"),  # path redacted
    ({"bootstrap": 10**12}, 422, "bootstrap",
     "bootstrap=1000000000000 exceeds this server's limit of 200 (PIDFLOW_MAX_BOOTSTRAP)"),
    ({"n_questions": 10**9}, 422, "n_questions",
     "n_questions=1000000000 exceeds this server's limit of 500 (PIDFLOW_MAX_QUESTIONS)"),
    ({"dims": [10**6] * 3}, 422, "dims", "dims [1000000, 1000000, 1000000]: each must be at most 16 on this server "
                                         "(PIDFLOW_MAX_DIM)"),
    ({"tasks": ["color", "shape", "yesno"]}, 422, "tasks",
     "3 tasks exceed this server's limit of 2 per study (PIDFLOW_MAX_TASKS)"),
    ({"knockouts": [{"edges": ["image->question"], "layers": [0, 10**9]}]}, 422, "knockouts[0]",
     "knockouts[0].layers [0, 1000000000] is outside the model: decoder layers are 0..5"),
    ({"knockouts": [{"edges": ["image->question"], "layers": [0, layer % 6]} for layer in range(17)]}, 422,
     "knockouts", "17 fixed knockout windows exceed this server's limit of 16 per study"),
    ({"n_questions": 5}, 422, "n_questions",
     "PCA sizes 8 + 8 + 4 = 20 latent dimensions need at least 42 questions in all (2 folds of 21); this request "
     "has 5: lower the PCA sizes or ask for more questions"),
    ({"n_questions": 60, "bootstrap": 200}, 422, "n_questions",
     "PCA sizes 8 + 8 + 4 = 20 latent dimensions and bootstrap resamples need at least 110 questions"),
    ({"target": "logprobs", "dims": [2, 2, 14], "max_dim": 64}, 422, "dims",
     "the target has 13 answers: its PCA size can be at most 13 (asked 14)"),
    ({"dataset": "gqa", "tasks": ["ChooseAttr"]}, 422, "dataset", "GQA is not configured on this server"),
    ({"tasks": ["nope"]}, 422, "tasks", "unknown task(s) 'nope' for easy-vqa"),
    ({"nonsense": 1}, 422, None, "unknown field 'nonsense'"),
])
def test_a_study_is_refused_up_front_as_an_analysis_is(api, monkeypatch, change, status, field, fragment):
    monkeypatch.delenv("PIDFLOW_GQA_ROOT", raising=False)
    change = dict(change)
    if change.pop("max_dim", None):
        api = make_client(api.app.state.service.settings.redis_url, api_tokens=("alpha",), max_dim=64)
    response = api.post("/api/v1/studies", json={**STUDY, **change}, headers=ALPHA)
    assert response.status_code == status, response.text
    body = response.json()
    assert fragment in body["detail"]
    assert body["errors"][0]["field"] == field
    assert _queued(api) == []  # nothing queued, no worker ever sees it


def test_the_same_few_questions_are_refused_alike_for_an_analysis_and_a_study(api):
    analysis = api.post("/api/v1/analyses", json={"n_questions": 5, "bootstrap": 0}, headers=ALPHA).json()
    study = api.post("/api/v1/studies", json={**STUDY, "n_questions": 5}, headers=ALPHA).json()
    assert study["detail"] == analysis["detail"] and study["errors"] == analysis["errors"]


def test_the_seed_recipe_alone_needs_only_what_one_component_each_needs(api):
    # the seed recipe sizes its PCA from the data (capped at what n supports): 24 questions suffice, 5 do not
    assert api.post("/api/v1/studies", json={**STUDY, "recipes": ["seed"], "n_questions": 24},
                    headers=ALPHA).status_code == 202
    refused = api.post("/api/v1/studies", json={**STUDY, "recipes": ["seed"], "n_questions": 5}, headers=ALPHA)
    assert refused.status_code == 422 and "PCA sizes 1 + 1 + 1 = 3 latent dimensions" in refused.json()["detail"]


def test_studies_count_against_the_tokens_active_work_with_analyses(api):
    api = make_client(api.app.state.service.settings.redis_url, hold=True, api_tokens=("alpha",),
                      max_active_per_token=2)  # analyses stay queued
    first = api.post("/api/v1/studies", json=STUDY, headers=ALPHA)
    assert first.status_code == 202, first.text
    assert api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0, "seed": 7},
                    headers=ALPHA).status_code in (200, 202)
    service = api.app.state.service
    active = service.registry.active("alpha")
    assert sorted(a.startswith("study:") for a in active) == [False, True]
    refused = api.post("/api/v1/studies", json={**STUDY, "n_questions": 121}, headers=ALPHA)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
    assert "2 analyses queued or running (a study counts as one)" in refused.json()["detail"]
    assert api.post("/api/v1/analyses", json={"n_questions": 51, "bootstrap": 0},
                    headers=ALPHA).status_code == 429
    assert len(_queued(api)) == 1


def test_a_finished_or_deleted_study_frees_its_place(api):
    shown = api.post("/api/v1/studies", json=STUDY, headers=ALPHA).json()["id"]
    service = api.app.state.service
    study_id = service.redis.get(HANDLE_PREFIX + shown).decode()
    service.redis.hset(f"pidflow:study:{study_id}", "state", "succeeded")
    assert api.post("/api/v1/studies", json={**STUDY, "n_questions": 121}, headers=ALPHA).status_code == 202
    assert api.post("/api/v1/studies", json={**STUDY, "n_questions": 122}, headers=ALPHA).status_code == 202
    assert api.post("/api/v1/studies", json={**STUDY, "n_questions": 123}, headers=ALPHA).status_code == 429


def test_study_writes_count_against_the_rate_limit(redis_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    api = make_client(redis_url, api_tokens=("alpha",), rate_limit_per_minute=2)
    assert api.post("/api/v1/studies", json=STUDY, headers=ALPHA).status_code == 202
    assert api.post("/api/v1/analyses", json={"n_questions": 50, "bootstrap": 0}, headers=ALPHA).status_code == 202
    limited = api.post("/api/v1/studies", json={**STUDY, "n_questions": 121}, headers=ALPHA)
    assert limited.status_code == 429 and "rate limit of 2 writes per minute" in limited.json()["detail"]


def test_the_cli_and_the_dashboard_call_the_same_feasibility_check(api):
    from app.precheck import Refused, check_study
    from app.ui import data
    from pidcore.study.run import StudyRequest

    with pytest.raises(Refused) as local:  # what `pidflow study` runs before anything starts
        check_study(StudyRequest.from_dict({**STUDY, "n_questions": 5}))
    with pytest.raises(data.DataError) as dashboard:
        data.submit_study(api.app.state.service, {**STUDY, "n_questions": 5}, "alpha")
    assert str(dashboard.value) == str(local.value) and dashboard.value.field == local.value.field == "n_questions"
