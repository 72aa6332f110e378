"""Bounded work, as an attacker probes it: every cost parameter has a configured upper bound, published in
the OpenAPI schema and enforced at submission with a 422 that names the bound and its setting."""

from __future__ import annotations

import pytest
import redis

from tests.service.test_api_routes import make_client, redis_url  # noqa: F401 - fixture

ALPHA = {"Authorization": "Bearer alpha"}


@pytest.fixture
def api(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    return make_client(redis_url, api_tokens=("alpha",), max_bootstrap=200, max_dim=16, max_tasks=2,
                       max_questions=500, rate_limit_per_minute=1000)


@pytest.mark.parametrize("body, fragment", [
    ({"bootstrap": 1_000_000_000_000}, "bootstrap=1000000000000 exceeds this server's limit of 200 (PIDFLOW_MAX_BOOTSTRAP)"),
    ({"bootstrap": 201}, "limit of 200"),
    ({"n_questions": 501}, "n_questions=501 exceeds this server's limit of 500 (PIDFLOW_MAX_QUESTIONS)"),
    ({"dims": [8, 17, 4]}, "each must be at most 16 on this server (PIDFLOW_MAX_DIM)"),
    ({"tasks": ["color", "shape", "yesno"]}, "3 tasks exceed this server's limit of 2 per analysis (PIDFLOW_MAX_TASKS)"),
])
def test_the_unbounded_request_is_refused_at_submission(api, body, fragment):
    response = api.post("/api/v1/analyses", json=body, headers=ALPHA)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert not redis.Redis.from_url(api.app.state.service.settings.redis_url).keys("fakejobs:*")  # nothing queued


@pytest.mark.parametrize("body, field", [
    ({"dims": [0, 0, 0]}, "dims"), ({"tasks": [""]}, "tasks"), ({"bootstrap": -1}, "bootstrap"),
    ({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"), ({"knockout": {"edges": ["image->last"], "layers": [-1, 2]}},
                                                        "knockout"),
])
def test_what_the_schema_forbids_is_refused_by_it(api, body, field):
    response = api.post("/api/v1/analyses", json=body, headers=ALPHA)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


def test_the_schema_publishes_the_configured_bounds(api):
    schema = api.get("/api/v1/openapi.json").json()["components"]["schemas"]
    props = schema["AnalysisRequestBody"]["properties"]
    assert props["bootstrap"]["maximum"] == 200 and props["bootstrap"]["minimum"] == 0
    assert props["n_questions"]["maximum"] == 500 and props["n_questions"]["minimum"] == 1
    assert props["dims"]["items"] == {"type": "integer", "minimum": 1, "maximum": 16}
    # a task: one of the datasets' (an enum), or an uploaded file's own name (any non-empty string)
    assert props["tasks"]["maxItems"] == 2 and props["tasks"]["items"]["anyOf"][1]["minLength"] == 1
    assert props["seed"]["minimum"] == 0 and props["seed"]["maximum"] == 2**32 - 1
    assert props["model"]["anyOf"][0]["enum"] == ["demo"]  # or an uploaded features file
    for value in (200, 500):  # at the bound: accepted
        assert api.post("/api/v1/analyses", json={"bootstrap": 200, "n_questions": value},
                        headers=ALPHA).status_code in (200, 202)


def test_bounds_come_from_the_environment():
    from app.settings import Settings

    cfg = Settings.from_env({"PIDFLOW_MAX_BOOTSTRAP": "0", "PIDFLOW_MAX_DIM": "4", "PIDFLOW_MAX_TASKS": "1"})
    assert (cfg.max_bootstrap, cfg.max_dim, cfg.max_tasks) == (0, 4, 1)
    defaults = Settings()
    assert (defaults.max_bootstrap, defaults.max_dim, defaults.max_tasks, defaults.max_questions) == (1000, 64, 6, 2000)
    with pytest.raises(ValueError, match="PIDFLOW_MAX_BOOTSTRAP must be >= 0"):
        Settings.from_env({"PIDFLOW_MAX_BOOTSTRAP": "-1"})
