"""A features file through the real stack (`pidflow serve`: private Redis, a Celery worker, uvicorn) in
hosted mode: the upload endpoint, the analysis, cache, share link and question images; the CLI with
--server; and the dashboard's drop zone in headless Chromium."""

from __future__ import annotations

import io
import os
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from app.served import served, stack_available
from pidcore.features.files import write_features
from pidcore.features.uploaded import analyze_features
from tests.browser.stack import CHROMIUM, chromium
from tests.browser.test_dashboard import pick
from tests.byo.test_cli_features import run_cli
from tests.pidcore.test_featurefile import N, known_system

TOKEN = "byo-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HTTP = httpx.Client(timeout=60)  # uploads and analyses are slow on a loaded 2-core machine: not 5 s
OTHER = "other-token"
MAX_UPLOAD = 1_000_000
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "artifacts")
OPTIONS = {"dims": [2, 2, 2], "gaussianize": False}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not stack_available(), reason="worker/ and the demo model have not landed")]


@pytest.fixture(scope="module")
def stack():
    env = {"PIDFLOW_API_TOKENS": f"{TOKEN},{OTHER}", "PIDFLOW_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "PIDFLOW_WORKER_PRELOAD": "0"}
    with served(env=env) as url:
        yield url


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    vision, language, y = known_system(seed=2)
    images = np.random.default_rng(3).integers(0, 255, (N, 12, 12, 3), dtype=np.uint8)
    cut = vision.copy()
    cut[2:, :, 0] = 0.0  # the knocked-out run: from file layer 2 on, vision no longer sees Y1
    path = tmp_path_factory.mktemp("byo") / "toy.npz"
    sha = write_features(path, vision=vision, language=language, target=y, images=images,
                         tasks=["color", "shape"] * (N // 2), questions=[f"what is {i}?" for i in range(N)],
                         answers=["red"] * N, predicted=["red", "blue"] * (N // 2), meta={"model": "toy-vlm"},
                         knockout={"vision": cut, "language": language, "target": y, "edges": ["image->question"],
                                   "layers": [1, 2]})
    return path, sha, images


def wait(url: str, job: dict, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = HTTP.get(url + job["status_url"], timeout=10).json()
        assert status["state"] != "failed", status["error"]
        if status["state"] == "succeeded":
            return HTTP.get(url + job["result_url"], timeout=10).json()
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_upload_analyse_cache_share_and_images(stack, features_file):
    path, sha, images = features_file
    api = stack + "/api/v1"
    body = path.read_bytes()
    assert HTTP.post(f"{api}/features", content=body).status_code == 401  # hosted: writes need the token
    uploaded = HTTP.post(f"{api}/features", content=body, headers=AUTH, params={"filename": path.name})
    assert uploaded.status_code == 201, uploaded.text
    info = uploaded.json()
    assert info["sha256"] == sha and info["id"].startswith("u") and info["model"] == f"features:{sha}"
    assert info["created"] is True
    assert info["tasks"] == {"color": N // 2, "shape": N // 2} and info["num_layers"] == 4 and info["images"]
    again = HTTP.post(f"{api}/features", content=body, headers=AUTH)
    assert again.status_code == 200 and again.json()["created"] is False
    assert HTTP.get(f"{api}/features/{sha}").json()["n_questions"] == N

    request = {**info["request"], **OPTIONS}
    submitted = HTTP.post(f"{api}/analyses", json=request, headers=AUTH)
    assert submitted.status_code == 202, submitted.text
    document = wait(stack, submitted.json())
    expected = analyze_features(path, **OPTIONS)
    assert document["runs"] == expected["runs"] and document["pointwise"] == expected["pointwise"]
    assert document["effects"] == expected["effects"] and document["runs"]["knockout"] is not None
    assert document["model"]["name"] == f"features:{sha}" and document["model"]["source_model"] == "toy-vlm"
    assert document["runs"]["baseline"]["accuracy"] == 0.5

    cached = HTTP.post(f"{api}/analyses", json=request, headers=AUTH)
    assert cached.status_code == 200 and cached.json()["cached"] is True
    share = HTTP.post(f"{api}/analyses/{submitted.json()['id']}/share", headers=AUTH).json()
    assert HTTP.get(share["url"] + "/result").json()["runs"] == document["runs"]

    qid = document["questions"][5]["qid"]
    view = HTTP.get(f"{api}/analyses/{submitted.json()['id']}/questions/{qid}").json()
    assert view["question"] == "what is 5?" and view["baseline"]["correct"] is False
    png = HTTP.get(stack + view["image_url"])
    assert png.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))), images[5])


def test_upload_errors(stack, features_file):
    api = stack + "/api/v1"
    too_big = HTTP.post(f"{api}/features", content=b"x" * (MAX_UPLOAD + 1), headers=AUTH)
    assert too_big.status_code == 413 and "PIDFLOW_MAX_UPLOAD_BYTES" in too_big.json()["detail"]
    bad = io.BytesIO()
    np.savez(bad, vision=np.zeros((2, 5, 3)), language=np.zeros((2, 5, 3)), target=np.full(5, np.inf))
    refused = HTTP.post(f"{api}/features", content=bad.getvalue(), headers=AUTH)
    assert refused.status_code == 422 and "target has 5 NaN or infinite" in refused.json()["detail"]
    unknown = HTTP.post(f"{api}/analyses", json={"model": "features:" + "0" * 64, "dataset": "features",
                                                  "split": "uploaded", "tasks": ["all"]}, headers=AUTH)
    assert unknown.status_code == 422 and "upload it first" in unknown.json()["detail"]
    sha = features_file[1]
    wrong_task = HTTP.post(f"{api}/analyses", json={"model": f"features:{sha}", "dataset": "features",
                                                     "split": "uploaded", "tasks": ["count"], "target": "hidden"},
                            headers=AUTH)
    assert wrong_task.status_code == 422 and "not in the file" in wrong_task.json()["detail"]
    info = HTTP.get(f"{api}/features/{sha}").json()
    too_wide = HTTP.post(f"{api}/analyses", json={**info["request"], "dims": [7, 2, 2]}, headers=AUTH)
    assert too_wide.status_code == 422 and "vision has 6 dimensions" in too_wide.json()["detail"]
    too_few = HTTP.post(f"{api}/analyses", json={**info["request"], "n_questions": 5}, headers=AUTH)
    assert too_few.status_code == 422 and "the file gives 10" in too_few.json()["detail"]
    assert HTTP.get(f"{api}/features/{'1' * 64}").status_code == 404


def test_cli_uploads_with_server(stack, features_file, tmp_path):
    path, sha, _ = features_file
    out = tmp_path / "remote.json"
    proc = run_cli("--features", str(path), "--server", stack, "--token", TOKEN, "--dims", "2", "2", "2",
                   "--no-gaussianize", "--task", "shape", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(out.read_text())
    assert result["runs"] == analyze_features(path, tasks=["shape"], **OPTIONS)["runs"]
    assert result["request"]["model"] == f"features:{sha}" and result["n_questions"] == N // 2


def test_only_an_uploader_deletes_a_file(stack, tmp_path):
    api = stack + "/api/v1"
    vision, language, y = known_system(seed=11)
    path = tmp_path / "gone.pt"
    sha = write_features(path, vision=vision, language=language, target=y)
    assert HTTP.post(f"{api}/features", content=path.read_bytes(), headers=AUTH).status_code == 201
    other = {"Authorization": f"Bearer {OTHER}"}
    refused = HTTP.delete(f"{api}/features/{sha}", headers=other)
    assert refused.status_code == 403 and "uploaded" in refused.json()["detail"]
    assert HTTP.delete(f"{api}/features/{sha}", headers=AUTH).json() == {"id": sha, "deleted": True}
    assert HTTP.get(f"{api}/features/{sha}").status_code == 404
    assert HTTP.delete(f"{api}/features/{sha}", headers=AUTH).status_code == 404


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_drop_a_features_file_in_the_dashboard(stack, tmp_path):
    vision, language, y = known_system(seed=9)
    path = tmp_path / "mine.safetensors"
    yy, xx = np.mgrid[0:32, 0:32]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100)[None, :, :, None] * np.array([200, 40, 40], dtype=np.uint8)
    sha = write_features(path, vision=vision, language=language, target=y, meta={"model": "my-vlm"},
                         images=np.repeat(disc.astype(np.uint8), N, axis=0), answers=["red"] * N,
                         questions=[f"What colour is disc {i}?" for i in range(N)])
    os.makedirs(ARTIFACTS, exist_ok=True)
    with chromium(tmp_path / "profile") as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(stack + "/")
        page.get_by_role("button", name="Run analysis").wait_for(timeout=20_000)
        page.locator("#token").fill(TOKEN)
        for name, value in (("vision", "2"), ("language", "2"), ("target", "2")):
            page.locator(f"#dim-{name}").fill(value)
        pick(page, "gaussianize", "none (PCA only)")
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-00-form.png"), full_page=True)
        page.locator("#features-upload input[type=file]").set_input_files(str(path), timeout=10_000)
        page.wait_for_function("document.querySelector('#features-summary').innerText.includes('300 questions')",
                               timeout=30_000)
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-01-uploaded.png"), full_page=True)
        page.wait_for_function(
            "document.querySelector('#stacked-baseline .js-plotly-plot')?.data?.some(t => t.meta === 'synergy')",
            timeout=120_000)
        summary = page.locator("#result-summary").inner_text()
        assert f"features:{sha[:12]} (my-vlm)" in summary and "300 questions" in summary and "4 layers" in summary
        traces = {t["meta"]: t for t in page.evaluate(
            "Array.from(document.querySelector('#stacked-baseline .js-plotly-plot').data)"
            ".map(t => ({meta: t.meta, y: t.y}))")}
        expected = analyze_features(path, **OPTIONS)["runs"]["baseline"]["layers"]
        np.testing.assert_allclose(traces["unique_vision"]["y"], [entry["unique_vision"] for entry in expected],
                                   rtol=1e-6)
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-02-result.png"), full_page=True)
        page.locator(".tab", has_text="Questions").first.click()
        # the server filters the list (the search box), then the one match is picked from the dropdown
        page.wait_for_function("document.querySelector('#question-count').innerText.includes('of 300 questions')",
                               timeout=30_000)
        page.locator("#question-search").fill("disc 7?")
        page.locator("#question-search").press("Enter")  # the search box sends on Enter (debounced)
        page.wait_for_function("document.querySelector('#question-count').innerText.startsWith('1 of 300')",
                               timeout=30_000)
        page.locator("#question-pick").click()
        option = page.get_by_role("option").filter(has_text="What colour is disc 7?").first
        option.wait_for(timeout=20_000)
        option.click()
        page.wait_for_function("() => { const img = document.querySelector('#question-image');"
                               " return img && img.complete && img.naturalWidth === 32; }", timeout=20_000)
        page.wait_for_function("document.querySelector('#question-view').innerText.includes('disc 7')",
                               timeout=20_000)
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-03-question.png"), full_page=True)
        page.locator(".tab", has_text="New analysis").first.click()
        page.locator("#features-upload input[type=file]").set_input_files(
            {"name": "broken.npz", "mimeType": "application/octet-stream", "buffer": b"not a features file"})
        page.wait_for_function("document.querySelector('#features-summary').innerText.includes('Cannot analyse')",
                               timeout=30_000)
        assert "not a readable npz archive" in page.locator("#features-summary").inner_text()
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-04-error.png"), full_page=True)
        # far over the limit: refused in the browser (never read nor sent), with the limit in the message
        page.locator("#features-upload input[type=file]").set_input_files(
            {"name": "huge.npz", "mimeType": "application/octet-stream", "buffer": b"0" * (MAX_UPLOAD * 3 // 2)})
        page.wait_for_function("document.querySelector('#features-summary').innerText.includes('huge.npz')",
                               timeout=10_000)
        assert "it is 1.43 MiB, more than this server accepts for a features file (977 KiB" in \
            page.locator("#features-summary").inner_text()
        page.screenshot(path=os.path.join(ARTIFACTS, "byo-05-too-large.png"), full_page=True)
