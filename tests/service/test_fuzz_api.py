"""Property-based fuzzing of the OpenAPI schema (schemathesis) against the ASGI app, every check on every
operation (analyses, features, shares, studies, catalogue), in local and in hosted mode (with a valid token,
so writes reach the service; studies are queued on the same Redis, where no worker takes them)."""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

import app.service as service_module
from app.redis_local import LocalRedis
from app.server import create_app
from app.service import AnalysisService
from app.settings import Settings
from tests.service.fakejobs import NUM_LAYERS, FakeJobs


@pytest.fixture(scope="module")
def redis_url():
    with LocalRedis() as server:
        yield server.url


@pytest.fixture(scope="module", params=["local", "hosted"])
def api_schema(request, redis_url):
    hosted = request.param == "hosted"
    cfg = Settings(redis_url=redis_url, max_questions=500, api_tokens=("fuzz",) if hosted else (),
                   rate_limit_per_minute=100_000, max_active_per_token=100_000,
                   # schemathesis sends bad tokens on purpose (its ignored-auth check wants their 401): the
                   # throttle of failed authentications (429, tests/service/test_hosted_limits.py) stays out of it
                   auth_failures_per_minute=100_000)
    client = redis.Redis.from_url(redis_url)
    service = AnalysisService(cfg, jobs=FakeJobs(client), redis_client=client)
    token = "fuzz" if hosted else None
    job = service.submit({"seed": 0}, token=token)  # one real analysis, so some generated ids may be left to chance
    service.create_share(job["id"], token=token)
    app = create_app(service=service, with_ui=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)
        patch.setenv("REDIS_URL", redis_url)  # worker.studies reads and queues studies there
        yield app


# Rules across fields cannot be written in JSON Schema: a task must belong to the chosen dataset, the
# questions must be enough for the dims and bootstrap, a knockout window must lie inside the chosen model,
# an uploaded file must parse, a study's question ids must name its tasks. Schema-valid bodies that break
# one are refused with a 422 naming the field; for these three operations (only) a 422 is therefore an
# expected answer to schema-valid data.
CROSS_FIELD_RULES = [{"include-path": path, "include-method": "POST", "checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]}}}
    for path in ("/api/v1/analyses", "/api/v1/features", "/api/v1/studies")]


def test_every_check_passes(api_schema):
    """Every schemathesis check (server errors, status codes and headers documented, response schemas,
    content types, negative data rejected, positive data accepted, use after free, ...), positive and
    negative generation, 40 examples per operation."""
    from schemathesis.config import SchemathesisConfig

    # the token through the document's bearer scheme: schemathesis then knows which requests carry it (its
    # negative cases without it, or with a wrong one, must get 401)
    config = {"operations": CROSS_FIELD_RULES, "auth": {"openapi": {"bearer": {"bearer": "fuzz"}}}}
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api_schema,
                                            config=SchemathesisConfig.from_dict(config))
    # schemathesis' pytest plugin does not run under pytest 9: drive its Hypothesis strategies directly
    checked, accepted = [], set()

    def every_check(operation, label: str):
        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def all_checks(case):
            response = case.call_and_validate()
            if response.status_code < 300:
                accepted.add(label)

        return all_checks

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        every_check(operation, label)()
        checked.append(label)
    assert len(checked) >= 29 and "POST /api/v1/analyses" in checked and "GET /api/v1/analyses" in checked
    assert {"POST /api/v1/features", "GET /api/v1/features/{features_id}", "DELETE /api/v1/features/{features_id}",
            "POST /api/v1/studies", "GET /api/v1/studies", "GET /api/v1/studies/{study_id}",
            "DELETE /api/v1/studies/{study_id}", "GET /api/v1/studies/{study_id}/report",
            "GET /api/v1/studies/{study_id}/report.csv", "GET /api/v1/studies/{study_id}/report.html"} <= set(checked)
    # generated writes got through (in hosted mode with the token schemathesis took from the bearer scheme)
    assert {"POST /api/v1/analyses", "POST /api/v1/studies", "GET /api/v1/analyses"} <= accepted, accepted


def test_the_schema_states_the_constraints_the_server_enforces(api_schema):
    document = api_schema.openapi()
    body = document["components"]["schemas"]["AnalysisRequestBody"]["properties"]
    assert body["dims"]["items"]["minimum"] == 1
    # a dataset's tasks, or an uploaded file's own task names; the dataset and split of an upload's request
    known, uploaded = body["tasks"]["items"]["anyOf"]
    assert "color" in known["enum"] and uploaded == {"type": "string", "minLength": 1,
                                                     "description": "a task of an uploaded features file"}
    assert body["dataset"]["enum"] == ["easy-vqa", "gqa", "features"] and "uploaded" in body["split"]["enum"]
    study = document["components"]["schemas"]["StudyRequestBody"]
    assert study["additionalProperties"] is False and study["properties"]["n_questions"]["maximum"] == 500
    assert study["properties"]["knockouts"]["maxItems"] == 16 and study["properties"]["dataset"]["enum"] == \
        ["easy-vqa", "gqa"]
    assert document["paths"]["/api/v1/studies"]["post"]["requestBody"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/StudyRequestBody"}
    assert document["components"]["schemas"]["KnockoutSpec"]["properties"]["layers"]["items"]["maximum"] == \
        NUM_LAYERS - 1
    responses = document["paths"]["/api/v1/analyses"]["post"]["responses"]
    assert {"200", "202", "400", "401", "422", "429", "503", "507"} <= set(responses)
