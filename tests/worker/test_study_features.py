"""Bring your own activations into a study through the API and the workers (issue 17.4): a study body naming
a server folder (`features_dir`: <dir>/<model>/<task>/ files, as `pidflow study --features-dir`) or uploaded
features files (`features`: {model: {task: [ids]}}) goes through the request gate (hosted tokens name no
server paths and only their own uploads), needs no GPU (its parts start with the plan, on the cpu queue), reads
the files in place (nothing is copied into the feature folder) and gives the report of
pidcore.study.run.run_study(features_dir=...)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from tests.worker.conftest import WorkerProcess, purge_broker
from tests.worker.test_study_cpu_analyses import BODIES, _same_report, sent  # noqa: F401 - fixture
from worker import studies

LAYERS, N, WIDTH = 7, 60, 48  # 6 decoder layers: the sweep's window is 2 layers (a third of the depth)
STUDY = {"models": ["llava-a", "llava-b"], "tasks": ["shape"], "n_questions": N, "recipes": ["pidflow", "seed"],
         "gaussianize": "none", "dims": [2, 2, 2], "bootstrap": 0, "seed": 3, "seed_cut": True,
         "sweep": {"edges": ["image->question"], "k": 9}}
WINDOWS = [[0, 5], [0, 1], [2, 3], [4, 5]]  # the seed cut and three of the six sweep windows (three missing)


def write_part(folder, model: str, task: str, seed: int) -> list[str]:
    """Features files of one part: baseline.npz, and one file per knockout window (the baseline's arrays and
    its knockout.* run, whose layers from the window's first decoder layer + 1 on differ: a real knockout's
    hidden states before its window equal the baseline's)."""
    from pidcore.features.files import write_features
    from pidcore.synthetic import real_width_system

    system = real_width_system(n=N, width=WIDTH, layers=LAYERS, seed=seed, system_seed=seed)
    vision, language = np.stack(system.x1), np.stack(system.x2)
    where = folder / model / task
    where.mkdir(parents=True)
    qids = np.array([f"{task}{i}" for i in range(N)])
    common = {"qids": qids, "tasks": np.full(N, task), "meta": {"model": f"{model}-7b", "target": "hidden"}}
    write_features(where / "baseline.npz", vision=vision, language=language, target=system.y, **common)
    rng = np.random.default_rng(seed + 100)
    names = ["baseline.npz"]
    for first, last in WINDOWS:
        k_vision, k_language = vision.copy(), language.copy()
        changed = slice(first + 1, None)
        k_vision[changed] = 0.6 * vision[changed] + rng.normal(size=vision[changed].shape).astype(vision.dtype)
        k_language[changed] = language[changed] + 0.3 * rng.normal(size=language[changed].shape).astype(language.dtype)
        name = f"ko-{first:02d}-{last:02d}.npz"
        write_features(where / name, vision=vision, language=language, target=system.y, **common,
                       knockout={"vision": k_vision, "language": k_language,
                                 "target": system.y + 0.2 * rng.normal(size=system.y.shape),
                                 "edges": ["image->question"], "layers": [first, last]})
        names.append(name)
    return names


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    for number, model in enumerate(STUDY["models"]):
        write_part(root, model, "shape", seed=number)
    return root


def _reference(folder) -> dict:
    from threadpoolctl import threadpool_limits

    from pidcore.study.run import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):  # as the workers (OMP_NUM_THREADS=1)
            return json.loads(json.dumps(run_study(dict(STUDY), features_dir=folder)))
    finally:
        torch.set_num_threads(threads)


def test_a_features_folder_study_runs_on_the_cpu_queue_and_equals_run_study(sent, client, folder, tmp_path,  # noqa: F811
                                                                            monkeypatch):
    volume = tmp_path / "volume"
    volume.mkdir()
    monkeypatch.setenv("PIDFLOW_FEATURE_DIR", str(volume))
    study_id = studies.submit({**STUDY, "features_dir": str(folder)})["id"]
    state = {k.decode(): v.decode() for k, v in client.hgetall(studies.keys(study_id)["study"]).items()}
    assert json.loads(state["source"]) == {"kind": "dir", "path": str(folder.resolve())}
    assert [name for name, _ in sent] == [studies.STUDY_PREPARE] * 2, "no GPU task: the parts start with the plan"
    ran = []
    while sent:
        name, args = sent.pop(0)
        ran.append(name)
        BODIES[name](*args)
        if name == studies.STUDY_PREPARE and args[2] == 0:
            refs = client.hgetall(studies.keys(study_id)["study-features"])
            runs = [value for key, value in refs.items() if key.decode().startswith("0:run:")]
            assert len(runs) == 5 and all(value.startswith(b"pidflow-features-file:") for value in runs)
            assert not any(volume.iterdir()), "the files are read in place, not copied into the feature folder"
    assert studies.status(study_id)["state"] == "succeeded"
    plan_units = ran.count(studies.STUDY_ANALYZE)
    report = studies.report(study_id)
    reference = _reference(folder)
    _same_report(report, reference)
    part = report["parts"][0]
    assert part["model_info"]["source"] == "features files"
    assert part["model_info"]["files"] == ["baseline.npz", "ko-00-01.npz", "ko-00-05.npz", "ko-02-03.npz",
                                           "ko-04-05.npz"]
    assert part["missing_runs"] == ["sweep@1", "sweep@3", "sweep@5"]  # the k = 2 windows 1-2, 3-4, 5-5: no files
    assert plan_units == report["timing"]["analysis_units"] > 0
    # a knockout run's layers up to its window's first decoder layer are the baseline's entries, exactly
    late, = [row["layers"] for row in report["series"] if (row["model"], row["recipe"], row["run"]) ==
             ("llava-a", "pidflow", "sweep@4")]  # window 4-5: hidden states 0-4 are the baseline's
    assert [entry["layer"] for entry in late if entry.get("reused_from_baseline")] == [0, 1, 2, 3, 4]
    assert not any(volume.iterdir())
    client.flushdb()


@pytest.mark.slow
def test_features_through_the_api_and_a_cpu_worker(redis_server, client, folder, tmp_path):
    """A real API (open mode) and one real worker taking only the cpu queue: the folder's study and the same
    files uploaded (POST /api/v1/features, then `features` naming their ids) both succeed with run_study's
    report; bad sources are 422 naming their field."""
    from fastapi.testclient import TestClient

    from app.server import create_app
    from app.service import AnalysisService
    from app.settings import Settings

    client.flushdb()
    purge_broker(redis_server.url)
    env = {**os.environ, "REDIS_URL": redis_server.url, "OMP_NUM_THREADS": "1", "PIDFLOW_WORKER_PRELOAD": "0"}
    worker = WorkerProcess("cpu-byo", tmp_path / "cpu.log", env, "cpu")
    api = TestClient(create_app(service=AnalysisService(Settings(redis_url=redis_server.url)), with_ui=False))
    try:
        worker.start()
        bad = api.post("/api/v1/studies", json={**STUDY, "features_dir": str(tmp_path / "nothing")})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "features_dir"
        assert "no features files" in bad.json()["detail"]
        both = api.post("/api/v1/studies", json={**STUDY, "features_dir": str(folder), "features": {}})
        assert both.status_code == 422 and both.json()["errors"][0]["field"] == "features_dir"

        def run(body) -> dict:
            info = api.post("/api/v1/studies", json=body)
            assert info.status_code == 202, info.text
            deadline = time.monotonic() + 300
            while (status := api.get(info.json()["status_url"]).json())["state"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert status["state"] == "succeeded", status["error"]
            return api.get(info.json()["report_url"]).json()

        from_folder = run({**STUDY, "features_dir": str(folder)})
        ids = {}
        for model in STUDY["models"]:
            paths = sorted((folder / model / "shape").glob("*.npz"))
            ids[model] = {"shape": []}
            for path in paths:
                upload = api.post(f"/api/v1/features?filename={path.name}", content=path.read_bytes(),
                                  headers={"content-type": "application/octet-stream"})
                assert upload.status_code in (200, 201), upload.text
                ids[model]["shape"].append(upload.json()["sha256"])
        partial = api.post("/api/v1/studies", json={**STUDY, "features": {"llava-a": ids["llava-a"]}})
        assert partial.status_code == 422 and partial.json()["errors"][0]["field"] == "features"
        assert "none for llava-b · shape" in partial.json()["detail"]
        from_uploads = run({**STUDY, "features": ids})
        log = worker.log()
        assert f"Task {studies.STUDY_PART}[" not in log, "no extraction task"
    finally:
        worker.stop()
        client.flushdb()
    from app.api.study_routes import finite

    reference = finite(_reference(folder))  # JSON has no NaN: the API says null (no answers in these files)
    _same_report(from_folder, reference)
    for section in ("headline", "knockouts", "series", "correlations", "findings"):
        assert from_uploads[section] == reference[section], section
    assert from_uploads["parts"][0]["model_info"]["source"] == "uploaded features files"
    assert [run["name"] for run in from_uploads["parts"][0]["runs"]] == \
        [run["name"] for run in reference["parts"][0]["runs"]]


def test_hosted_tokens_name_no_server_folder_and_only_their_own_uploads(redis_server, client, folder):
    """The gate in hosted mode: `features_dir` is refused (422, field features_dir) before anything is read;
    `features` naming another token's upload is refused (422, field features); the token's own handle passes
    the gate."""
    from fastapi.testclient import TestClient

    from app.server import create_app
    from app.service import AnalysisService
    from app.settings import Settings

    client.flushdb()
    alpha, beta = {"Authorization": "Bearer alpha"}, {"Authorization": "Bearer beta"}
    service = AnalysisService(Settings(redis_url=redis_server.url, api_tokens=("alpha", "beta"),
                                       rate_limit_per_minute=1000))
    api = TestClient(create_app(service=service, with_ui=False))
    refused = api.post("/api/v1/studies", json={**STUDY, "features_dir": str(folder)}, headers=alpha)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "features_dir"
    assert "hosted server reads no server folders" in refused.json()["detail"]
    path = folder / "llava-a" / "shape" / "baseline.npz"
    upload = api.post("/api/v1/features?filename=baseline.npz", content=path.read_bytes(),
                      headers={"content-type": "application/octet-stream", **alpha})
    assert upload.status_code in (200, 201), upload.text
    handle, sha = upload.json()["id"], upload.json()["sha256"]
    study = {**STUDY, "models": ["llava-a"]}
    for ids, headers in (([handle], beta), ([sha], beta)):
        other = api.post("/api/v1/studies", json={**study, "features": {"llava-a": {"shape": ids}}},
                         headers=headers)
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "features", other.text
    own = service.study_source({**study, "features": {"llava-a": {"shape": [handle]}}}, "alpha")
    assert own == {"features": {"llava-a": {"shape": [sha]}}}
    client.flushdb()


def test_a_file_reference_reads_in_place_and_refuses_a_changed_file(folder, tmp_path):
    """feature_store.file_reference: the run is read lazily from the user's file (once per worker process);
    a caller replacing a field of what it got does not change the next load; a file whose size changed is
    no longer present and is refused."""
    import shutil

    from pidcore.features.files import read_features
    from worker import feature_store

    path = tmp_path / "ko.npz"
    shutil.copy(folder / "llava-a" / "shape" / "ko-02-03.npz", path)
    found = read_features(path, lazy=True)
    value = feature_store.file_reference(path, "knockout", found.sha256)
    first = feature_store.load(value)
    assert first.meta["knockout"] == {"edges": ["image->question"], "layers": [2, 3]}
    assert np.array_equal(np.asarray(first.vision[4]), np.asarray(found.knockout.vision[4]))
    first.target = np.zeros_like(first.target)  # as with_baseline_target replaces it
    assert not np.array_equal(feature_store.load(value).target, first.target)
    baseline = feature_store.load(feature_store.file_reference(path, "baseline", found.sha256))
    assert np.array_equal(np.asarray(baseline.vision[4]), np.asarray(found.features.vision[4]))
    assert feature_store.present(value)
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    assert not feature_store.present(value)
    with pytest.raises(FileNotFoundError, match="missing or changed"):
        feature_store.load(value)
