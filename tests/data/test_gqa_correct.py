"""GQA as the seed used it, on a tiny GQA-format folder the test writes (easy-VQA's images and questions
filed as two GQA tasks): the questions the demo model answers correctly, counted per task and model, equal
the direct extraction's; Zhang et al.'s published CSV names and id lists are read; a study shows the count."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pidcore import data
from pidcore.data.correct import count_correct, format_counts
from pidcore.data.gqa import correct_questions, csv_task

# easy-VQA task -> (GQA task, structural, semantic)
AS_GQA = {"color": ("ChooseAttr", "choose", "attr"), "shape": ("QueryAttr", "query", "attr")}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # tests/conftest.py
    yield


@pytest.fixture(scope="module")
def gqa_root(tmp_path_factory):
    """24 easy-VQA questions per task as GQA testdev questions, with their images; every fourth one's gold
    answer is replaced by a wrong one of the same kind (the model, seeing the image, cannot agree)."""
    from pidcore.data.easyvqa import COLORS, SHAPES

    root = tmp_path_factory.mktemp("gqa")
    (root / "images").mkdir()
    questions, originals = {}, {}
    for source, (_, structural, semantic) in AS_GQA.items():
        kind = COLORS if source == "color" else SHAPES
        for index, item in enumerate(data.load_questions("easy-vqa", [source], n=24, seed=3)):
            qid, image_id = f"{len(questions) + 1000}", f"n{source}{index}"
            shutil.copy(item.image_path, root / "images" / f"{image_id}.png")
            wrong = kind[(kind.index(item.answer) + 1) % len(kind)]
            questions[qid] = {"imageId": image_id, "question": item.question,
                              "answer": wrong if index % 4 == 3 else item.answer,
                              "types": {"structural": structural, "semantic": semantic, "detailed": "x"}}
            originals[qid] = item
    (root / "testdev_balanced_questions.json").write_text(json.dumps(questions))
    return root, originals


def test_correct_count_per_task_and_model_equals_the_direct_extraction(gqa_root):
    from pidcore.extract import extract
    from pidcore.pipeline.analysis import _adapter

    root, originals = gqa_root
    items, counts = correct_questions("demo", ["ChooseAttr", "QueryAttr"], root=root)
    answers = data.answer_set("gqa", root=root)
    assert set(answers) < set(data.answer_set("easy-vqa")) and len(answers) == 11  # 8 colours + 3 shapes
    for task, count in counts.items():
        asked = data.load_questions("gqa", [task], root=root)
        source = [originals[item.qid.removeprefix("gqa.")] for item in asked]
        direct = extract(_adapter("demo"), source, answers=answers).correct  # true gold answers, same images
        assert direct.all(), "the demo model answers these easy-VQA questions right"
        assert (count.model, count.task, count.asked, count.correct) == ("demo", task, 24, 18)
        assert [item.qid for item in count.items] == [item.qid for index, item in enumerate(asked) if index % 4 != 3]
    assert items == [item for count in counts.values() for item in count.items]
    assert format_counts(counts).splitlines()[0] == (
        f"demo · ChooseAttr: {counts['ChooseAttr'].correct} of 24 answered correctly "
        f"({100 * counts['ChooseAttr'].correct / 24:.1f}%)")
    listed = count_correct("demo", "gqa", ["QueryAttr"], root=root, question_ids={"QueryAttr": ["1024", "gqa.1030"]})
    assert listed["QueryAttr"].asked == 2


def test_zhang_et_al_csv_lists_are_recognised(gqa_root, tmp_path):
    from pidcore.study.run import read_question_ids

    root, _ = gqa_root
    name = "GQA_val_correct_question_with_categoryThatThisChoose_objThisChoose_ChooseCat.csv"
    assert csv_task(name) == "ChooseCat"
    folder = tmp_path / "gqa"
    shutil.copytree(root, folder)
    (folder / "datasets").mkdir()
    (folder / "datasets" / name).write_text("question_id,img_id,question,answer\n"
                                            "07a,ncolor0,What color is the shape?,red\n"
                                            "07b,ncolor1,Which colour?,blue\n")
    items = data.load_questions("gqa", "ChooseCat", root=folder)
    assert [(item.qid, item.answer, item.image_path.endswith("ncolor0.png")) for item in items] == [
        ("gqa.07a", "red", True), ("gqa.07b", "blue", False)]
    assert read_question_ids(folder / "datasets" / name) == {"ChooseCat": ["07a", "07b"]}
    (folder / "datasets" / "GQA_val_correct_question_with_choose_ChooseAttr.csv").write_text(
        "question_id,img_id,question,answer\n1000,n,q,a\n")
    assert read_question_ids(folder / "datasets") == {"ChooseAttr": ["1000"], "ChooseCat": ["07a", "07b"]}
    (folder / "tasks.csv").write_text("task,question_id\nQueryAttr,1024\nChooseAttr,1001\n")
    assert read_question_ids(folder / "tasks.csv") == {"QueryAttr": ["1024"], "ChooseAttr": ["1001"]}


def test_a_gqa_study_reports_the_count_per_task_and_model(gqa_root, monkeypatch):
    from pidcore.study.export import to_csv, to_html
    from pidcore.study.run import default_request, run_study

    root, _ = gqa_root
    monkeypatch.setenv("PIDFLOW_GQA_ROOT", str(root))
    _, counts = correct_questions("demo", ["ChooseAttr"], root=root)
    request = default_request(dataset="gqa", tasks=["ChooseAttr"], n_questions=24, correct_only=True,
                              recipes=["pidflow"], sweep=None, seed_cut=False, gaussianize="none", dims=[2, 2, 2],
                              bootstrap=0)
    report = run_study(request)
    part = report["parts"][0]
    assert (part["n_asked"], part["n_correct"], part["n_kept"]) == (24, counts["ChooseAttr"].correct,
                                                                     counts["ChooseAttr"].correct)
    assert report["headline"][0]["n_questions"] == counts["ChooseAttr"].correct
    assert np.isclose(report["headline"][0]["accuracy"], 1.0)
    rows = [line for line in to_csv(report).splitlines() if line.startswith("questions,")]
    assert f"questions,demo,ChooseAttr,,,,,n_correct,{counts['ChooseAttr'].correct},," in rows
    assert "answered correctly" in to_html(report, plotly_js="/* plotly */")
