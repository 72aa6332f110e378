"""Small wording items of the Results tab and the upload form (issue 18): one number formatter for the
figures and the dashboard (never "-0.000"), the difference plot's caption saying its bands are paired,
the upload's PCA sizes capped at the file's dimensions, layers without attention named as such."""

from __future__ import annotations

import json

from app.ui import layout, results_callbacks, upload_callbacks, wording
from pidcore import plot
from tests.service.test_api_routes import redis_url  # noqa: F401 - fixture
from tests.service.test_body_limits import _drop_zone_body, _npz_data_url, dashboard  # noqa: F401 - fixture
from tests.ui.demo_result import make_document

KNOCKOUT = {"edges": ["image->question"], "layers": [1, 3]}


def test_the_dashboard_formats_numbers_with_the_figures_formatter():
    assert wording.fmt is plot.fmt
    assert [wording.fmt(v, 3, True) for v in (-0.0004, -0.0006, 0.25)] == ["0.000", "-0.001", "+0.250"]


def test_the_effects_table_never_shows_minus_zero():
    document = make_document({"knockout": KNOCKOUT}, with_ci=True)
    document["effects"]["information_cost"] = -0.0004
    document["effects"]["compensatory_synergy"] = -0.0000001
    text = json.dumps(results_callbacks.effects_table(document).to_plotly_json(), default=str)
    assert "-0.000" not in text and "0.000" in text


def test_the_difference_caption_says_its_bands_are_paired():
    banded = make_document({"knockout": KNOCKOUT}, with_ci=True)
    banded["effects"]["per_layer"] = [{"layer": 2, "ci": {"synergy": [-0.01, 0.02]}}]
    text = wording.difference_sentence(banded)
    assert "Knockout minus baseline" in text and "paired 95% intervals" in text and "same questions" in text
    assert text != wording.target_sentence(banded)
    plain = make_document({"knockout": KNOCKOUT})
    plain["effects"].pop("per_layer", None)
    assert "No bands" in wording.difference_sentence(plain) and "paired" not in wording.difference_sentence(plain)


def test_the_upload_request_caps_pca_sizes_at_the_files_dimensions():
    info = {"vision_dim": 16, "language_dim": 2, "target_dim": 3, "request": {"model": "features:" + "a" * 64}}
    request = upload_callbacks.features_request(info, "broja", [8, 8, 4], "none", 0)
    assert request["dims"] == [8, 2, 3] and request["model"] == "features:" + "a" * 64
    assert upload_callbacks.capped_dims(info, [8, 8, 4])[1] == \
        "PCA sizes capped at the file's dimensions: language 8 -> 2, target 4 -> 3."
    assert upload_callbacks.capped_dims(info, [4, 2, 1]) == ([4, 2, 1], None)


def test_layers_without_attention_are_named_so():
    model = {"family": "Qwen3.5", "num_layers": 4, "knockout_edges": ["image->question"],
             "linear_attention_layers": [0, 1, 2]}
    summary = layout.model_summary(model)
    assert "no knockouts on layers without attention [0, 1, 2]" in summary and "linear-attention" not in summary


def test_a_drop_with_the_forms_default_sizes_goes_through(dashboard):  # noqa: F811
    """The drop zone with target 4 asked of a file whose target has one dimension (it was refused)."""
    api, service = dashboard
    body = _drop_zone_body(service, _npz_data_url())
    body["state"] = [{**s, "value": 4} if s["id"] == "dim-target" else s for s in body["state"]]
    response = api.post("/_dash-update-component", content=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    summary = json.dumps(response.json()["response"]["features-summary"])
    assert "Features file" in summary and "target 4 -> 1" in summary
    assert "Cannot analyse" not in summary
