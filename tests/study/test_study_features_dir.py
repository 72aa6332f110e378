"""Bring your own activations into a study (issue 17.7): `pidflow study --features-dir DIR` reads each
part's runs from features files (DIR/<model>/<task>/, one file per knocked-out run holding the baseline's
arrays and its knockout.* arrays) and gives the same report as extracting them: here the files are the demo
model's own extraction, so every number equals the extracted study's exactly."""

from __future__ import annotations

import json

import torch

from app.cli import main
from pidcore.features.files import write_features
from pidcore.study.run import default_request, extract_questions, run_study

OPTIONS = {"tasks": ["shape"], "n_questions": 48, "recipes": ["pidflow", "seed"], "gaussianize": "none",
           "dims": [2, 2, 2], "bootstrap": 0, "seed": 4, "sweep": None,
           "knockouts": [{"edges": ["image->last"], "layers": [2, 3]}]}


def _write(folder, request) -> list[str]:
    runs = extract_questions(request, "demo", "shape")
    base = runs.pop("baseline")
    (folder / "demo-files" / "shape").mkdir(parents=True)
    names = []
    for number, (key, run) in enumerate(runs.items()):
        names.append(key)
        window = run.meta["knockout"]
        write_features(folder / "demo-files" / "shape" / f"run{number}.npz", vision=base.vision, language=base.language,
                       target=base.target, qids=base.qids, tasks=base.tasks, questions=base.questions,
                       answers=base.answers, predicted=base.predicted, p_correct=base.p_correct,
                       answer_set=base.answer_set, meta={"model": "demo", "language_pooling": "mean",
                                                         "target": "logprobs"},
                       knockout={"vision": run.vision, "language": run.language, "target": run.target,
                                 "predicted": run.predicted, "p_correct": run.p_correct, **window})
    return names


def test_a_study_from_features_files_equals_the_extracted_study(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        request = default_request(**OPTIONS)
        keys = _write(tmp_path / "files", request)
        assert sorted(keys) == ["image->last@2-3", "image->question@0-5"]  # the fixed window and the seed cut
        reference = json.loads(json.dumps(run_study(request)))
        out = tmp_path / "out"
        argv = ["study", "--features-dir", str(tmp_path / "files"), "--n-questions", "48", "--no-gaussianize",
                "--dims", "2", "2", "2", "--no-sweep", "--window", "image->last", "2", "3", "--bootstrap", "0",
                "--seed", "4", "-o", str(out)]
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((out / "study.json").read_text())
    assert report["request"]["models"] == ["demo-files"] and report["request"]["tasks"] == ["shape"]

    def without_model(rows):
        return [{k: v for k, v in row.items() if k != "model"} for row in rows]
    for section in ("headline", "knockouts", "series"):
        assert without_model(report[section]) == without_model(reference[section]), section
    part, expected = report["parts"][0], reference["parts"][0]
    assert [run["name"] for run in part["runs"]] == [run["name"] for run in expected["runs"]]  # named as planned
    assert part["seed_dims"] == expected["seed_dims"] and part["n_correct"] == expected["n_correct"]
    assert part["model_info"]["source"] == "features files" and part["model_info"]["files"] == ["run0.npz", "run1.npz"]
    capsys.readouterr()
    assert main(argv) == 0  # the same command again: the part is reused from <out>/.parts
    assert "reused 1 finished part(s)" in capsys.readouterr().out
