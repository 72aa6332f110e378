"""Property-based fuzzing of the OpenAPI schema (schemathesis) against the ASGI app: no 5xx answers,
in local and in hosted mode (with a valid token, so writes reach the service)."""

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
                   rate_limit_per_minute=100_000)
    client = redis.Redis.from_url(redis_url)
    service = AnalysisService(cfg, jobs=FakeJobs(client), redis_client=client)
    token = "fuzz" if hosted else None
    job = service.submit({"seed": 0}, token=token)  # one real analysis, so some generated ids may be left to chance
    service.create_share(job["id"], token=token)
    app = create_app(service=service, with_ui=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "_num_decoder_layers", lambda model: NUM_LAYERS)
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


def test_no_server_errors(api_schema):
    # schemathesis' pytest plugin does not run under pytest 9: drive its Hypothesis strategies directly
    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(case):
            response = case.call(headers={"Authorization": "Bearer fuzz"})
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        no_5xx()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 13 and "POST /api/v1/analyses" in checked
