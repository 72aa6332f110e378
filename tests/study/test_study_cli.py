"""`pidflow study` end to end on the demo model (small), and its clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from app.cli import main


def test_pidflow_study_writes_json_csv_html(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["study", "--task", "shape", "--n-questions", "60", "--no-gaussianize", "--dims", "2", "2", "2",
                 "--no-sweep", "--window", "image->last", "2", "3", "--recipe", "pidflow", "--bootstrap", "0",
                 "-o", str(out)])
    assert code == 0
    report = json.loads((out / "study.json").read_text())
    assert [run["name"] for run in report["parts"][0]["runs"]] == ["baseline", "image->last@2-3", "seed-cut"]
    assert [(row["model"], row["task"], row["recipe"]) for row in report["headline"]] == [("demo", "shape", "pidflow")]
    row = report["headline"][0]
    assert sum(row["shares"].values()) == pytest.approx(1.0)
    with (out / "study.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["section"] for r in rows} == {"headline", "questions", "knockout", "knockout_delta", "layer"}
    counts = {r["quantity"]: int(r["value"]) for r in rows if r["section"] == "questions"}
    part = report["parts"][0]
    assert counts == {"n_asked": 60, "n_correct": part["n_correct"], "n_kept": 60}
    assert part["n_correct"] == round(60 * row["accuracy"])
    page = (out / "study.html").read_text()
    assert page.count('class="plotly-graph-div"') == 1 and "Plotly" in page
    printed = capsys.readouterr().out
    assert "demo" in printed and "report written to" in printed and "U_v peak" in printed
    assert "What the study found (the seed paper's claims; rules in docs/study.md):" in printed
    assert ("(a) U_vision peaks in the first third of the depth and decays: inconclusive at this n: largest "
            "U_vision in the first third minus the largest after it") in printed  # bootstrap 0: no intervals
    assert "What the study found</h2>" in page and "class='verdict inconclusive'" in page
    assert report["findings"]["not_tested"] == ["d: one model"]
    assert f"demo · shape: 60 asked, {part['n_correct']} answered correctly, 60 kept" in printed


def test_pidflow_study_bad_input_is_a_message(tmp_path, capsys):
    assert main(["study", "--window", "image->x", "1", "2", "-o", str(tmp_path)]) == 2
    assert "--window image->x 1 2: edges must be" in capsys.readouterr().err
    assert main(["study", "--recipe", "pidflow", "--sweep-k", "0", "-o", str(tmp_path)]) == 2
    assert "sweep k must be an integer >= 1" in capsys.readouterr().err


def test_pidflow_study_refuses_what_the_server_would_refuse_before_loading_a_model(tmp_path, capsys):
    """The server's feasibility check (app.precheck.check_study): 5 questions, a window outside the model."""
    assert main(["study", "--task", "shape", "--n-questions", "5", "--bootstrap", "0", "-o", str(tmp_path)]) == 2
    assert ("PCA sizes 8 + 8 + 4 = 20 latent dimensions need at least 42 questions in all (2 folds of 21); this "
            "request has 5") in capsys.readouterr().err
    assert main(["study", "--task", "shape", "--window", "image->last", "2", "9", "-o", str(tmp_path)]) == 2
    assert "knockouts[0].layers [2, 9] is outside the model: decoder layers are 0..5" in capsys.readouterr().err
    assert not (tmp_path / "study.json").exists()


def test_ctrl_c_in_pidflow_study_keeps_the_parts_that_finished(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the second part runs (simulated: KeyboardInterrupt raised inside it): the first part's
    report is written, the missing part named, exit status 130."""
    import pidcore.study.run as study

    real, calls = study.run_part, []

    def interrupted(request, model, task, progress=None):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(request, model, task, progress=progress)

    monkeypatch.setattr(study, "run_part", interrupted)
    out = tmp_path / "study"
    code = main(["study", "--task", "shape", "--task", "color", "--n-questions", "60", "--no-gaussianize", "--dims",
                 "2", "2", "2", "--no-sweep", "--no-seed-cut", "--recipe", "pidflow", "--bootstrap", "0", "-o", str(out)])
    assert code == 130 and calls == ["shape", "color"]
    report = json.loads((out / "study.json").read_text())
    assert [(row["task"], row["recipe"]) for row in report["headline"]] == [("shape", "pidflow")]
    assert report["interrupted"] == {"finished_parts": [["demo", "shape"]], "missing_parts": [["demo", "color"]]}
    err = capsys.readouterr().err
    assert "interrupted: 1 of 2 parts finished; their report is in" in err and "(missing: demo · color)" in err
    monkeypatch.setattr(study, "run_part", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["study", "--task", "shape", "--n-questions", "60", "--dims", "2", "2", "2", "--bootstrap", "0",
                 "-o", str(tmp_path / "none")]) == 130
    assert "none of the 1 parts had finished; nothing written" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_the_batch_size_reaches_a_study_and_its_shards(tmp_path, monkeypatch):
    """`pidflow study --batch-size 4` (PIDFLOW_BATCH_SIZE) is the extraction's batch; question shards start at
    its multiples, so shards merged are bit-equal to the whole part."""
    import numpy as np

    from pidcore.extract import multirun
    from pidcore.study.run import default_request, extract_questions
    from worker import shards

    monkeypatch.setenv("PIDFLOW_BATCH_SIZE", "8")  # restored at teardown (the CLI sets it in this process)
    sizers, real = [], multirun.BatchSizer.for_adapter

    def spy(adapter, batch_size):
        sizers.append(real(adapter, batch_size))
        return sizers[-1]
    monkeypatch.setattr(multirun.BatchSizer, "for_adapter", spy)
    assert main(["study", "--task", "shape", "--n-questions", "60", "--no-gaussianize", "--dims", "2", "2", "2",
                 "--no-sweep", "--no-seed-cut", "--recipe", "pidflow", "--bootstrap", "0", "--batch-size", "4",
                 "-o", str(tmp_path)]) == 0
    assert [sizer.sizes for sizer in sizers] == [[4] * 15]  # 60 questions in forward passes of 4
    assert shards.shard_size({"PIDFLOW_EXTRACT_SHARD": "20", "PIDFLOW_BATCH_SIZE": "12"}) == 24
    assert shards.shard_size({"PIDFLOW_EXTRACT_SHARD": "20", "PIDFLOW_BATCH_SIZE": "auto"}) == 24  # 8s
    assert shards.shard_size({"PIDFLOW_EXTRACT_SHARD": "20"}) == 24
    monkeypatch.setenv("PIDFLOW_BATCH_SIZE", "6")
    request = default_request(tasks=["shape"], n_questions=24, sweep=None)
    size = shards.shard_size({"PIDFLOW_EXTRACT_SHARD": "10", "PIDFLOW_BATCH_SIZE": "6"})
    assert size == 12
    whole = extract_questions(request, "demo", "shape")
    halves = [extract_questions(request, "demo", "shape", start, stop) for start, stop in shards.shard_bounds(24, size)]
    for key, features in whole.items():
        merged = shards.merge([half[key] for half in halves])
        assert np.array_equal(merged.vision, features.vision) and np.array_equal(merged.language, features.language)
        assert np.array_equal(merged.target, features.target)


def test_a_failed_part_keeps_the_others_and_a_rerun_reuses_them(tmp_path, capsys, monkeypatch):
    """One part fails: the other's report is written, the failure said (status 1); the same command again
    runs only the failed part (the finished one comes from <output dir>/.parts)."""
    from pidcore.study import run as study

    out = tmp_path / "study"
    argv = ["study", "--task", "shape", "--task", "color", "--n-questions", "48", "--no-gaussianize", "--dims", "2",
            "2", "2", "--no-sweep", "--no-seed-cut", "--recipe", "pidflow", "--bootstrap", "0", "-o", str(out)]
    real, calls = study.run_part, []

    def broken(request, model, task, progress=None):
        calls.append(task)
        if task == "shape":
            raise RuntimeError("boom in shape")
        return real(request, model, task, progress=progress)
    monkeypatch.setattr(study, "run_part", broken)
    assert main(argv) == 1
    said = capsys.readouterr()
    assert "part demo · shape failed: RuntimeError: boom in shape" in said.err
    assert "1 of 2 parts finished" in said.err and "run the same command again" in said.err
    first = json.loads((out / "study.json").read_text())
    assert [p["task"] for p in first["parts"]] == ["color"]
    assert first["failed_parts"] == [{"model": "demo", "task": "shape", "error": "RuntimeError: boom in shape"}]

    def counted(request, model, task, progress=None):
        calls.append(task)
        return real(request, model, task, progress=progress)
    monkeypatch.setattr(study, "run_part", counted)
    calls.clear()
    assert main(argv) == 0
    assert calls == ["shape"]  # color was reused
    assert "reused 1 finished part(s)" in capsys.readouterr().out
    second = json.loads((out / "study.json").read_text())
    assert [p["task"] for p in second["parts"]] == ["shape", "color"] and "failed_parts" not in second
    assert [row for row in second["headline"] if row["task"] == "color"] == first["headline"]
    calls.clear()
    assert main([*argv, "--no-resume"]) == 0 and calls == ["shape", "color"]
