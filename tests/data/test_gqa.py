"""GQA from files written by the tests: JSON task filters, CSV lists, images, errors naming paths."""

import json

import pytest
from PIL import Image

from pidcore import data

TYPES = {
    "ChooseAttr": ("choose", "attr", "chooseAttr"),
    "QueryAttr": ("query", "attr", "queryAttr"),
    "LogicalObj": ("logical", "obj", "logicOr"),
    "CompareAttr": ("compare", "attr", "sameColor"),
    "ChooseRel": ("choose", "rel", "chooseRel"),
    "ChooseCat": ("choose", "cat", "categoryThatChoose"),
    None: ("verify", "attr", "verifyAttr"),
}


@pytest.fixture
def gqa_root(tmp_path):
    (tmp_path / "images").mkdir()
    questions = {}
    for index, (task, (structural, semantic, detailed)) in enumerate(TYPES.items()):
        for copy in range(3):
            qid = f"{index}{copy:02d}"
            image_id = f"n{index}{copy}"
            Image.new("RGB", (12, 8), (20 * index, 0, 0)).save(tmp_path / "images" / f"{image_id}.jpg")
            questions[qid] = {"imageId": image_id, "question": f"question {task} {copy}?",
                              "answer": f"ans{index}", "types": {"structural": structural,
                                                                 "semantic": semantic, "detailed": detailed}}
    (tmp_path / "testdev_balanced_questions.json").write_text(json.dumps(questions))
    return tmp_path


def test_json_task_filters_select_their_types(gqa_root):
    for index, task in enumerate(t for t in TYPES if t):
        items = data.load_questions("gqa", task, root=gqa_root)
        assert [item.qid for item in items] == [f"gqa.{index}{c:02d}" for c in range(3)]
        assert {item.answer for item in items} == {f"ans{index}"} and {item.task for item in items} == {task}
        assert items[0].load_image().size == (12, 8)
        assert data.find_image(items[0].image_id, root=gqa_root) == gqa_root / "images" / f"n{index}0.jpg"


def test_detailed_type_is_the_fallback_filter(gqa_root):
    path = gqa_root / "testdev_balanced_questions.json"
    questions = json.loads(path.read_text())
    for record in questions.values():
        record["types"] = {"detailed": record["types"]["detailed"]}
    path.write_text(json.dumps(questions))
    assert [i.qid for i in data.load_questions("gqa", "LogicalObj", root=gqa_root)] == ["gqa.200", "gqa.201", "gqa.202"]
    assert len(data.load_questions("gqa", "CompareAttr", root=gqa_root)) == 3


def test_environment_root_and_sampling(gqa_root, monkeypatch):
    monkeypatch.setenv("PIDFLOW_GQA_ROOT", str(gqa_root))
    picked = data.load_questions("gqa", ["ChooseAttr", "QueryAttr"], n=2, seed=5)
    assert len(picked) == 4 and picked == data.load_questions("gqa", ["ChooseAttr", "QueryAttr"], n=2, seed=5)
    assert data.answer_set("gqa") == [f"ans{i}" for i in range(7)]


def test_csv_question_list_takes_precedence_with_liberal_columns(gqa_root):
    (gqa_root / "csv").mkdir()
    (gqa_root / "csv" / "chooseattr.csv").write_text(
        "Question ID,img_id,Question,gt_answer\n77,n00.jpg,is it red or blue?,red\n78,n01,what?,blue\n")
    items = data.load_questions("gqa", "ChooseAttr", root=gqa_root)
    assert [(i.qid, i.image_id, i.question, i.answer) for i in items] == [
        ("gqa.77", "gqa.n00", "is it red or blue?", "red"), ("gqa.78", "gqa.n01", "what?", "blue")]
    assert "red" in data.answer_set("gqa", root=gqa_root)


def test_csv_without_an_answer_column_names_the_file(gqa_root):
    bad = gqa_root / "QueryAttr.csv"
    bad.write_text("qid,imageId,question\n1,n00,what?\n")
    with pytest.raises(ValueError, match=r"QueryAttr.csv has no answer column"):
        data.load_questions("gqa", "QueryAttr", root=gqa_root)


def test_missing_files_name_the_path(tmp_path, gqa_root, monkeypatch):
    monkeypatch.delenv("PIDFLOW_GQA_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="PIDFLOW_GQA_ROOT"):
        data.load_questions("gqa", "ChooseAttr")
    with pytest.raises(FileNotFoundError, match="GQA root folder not found: .*nowhere"):
        data.load_questions("gqa", "ChooseAttr", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no GQA question JSON for split 'val'.*val_balanced_questions.json"):
        data.load_questions("gqa", "ChooseAttr", split="val", root=gqa_root)
    (gqa_root / "images" / "n00.jpg").unlink()
    item = data.load_questions("gqa", "ChooseAttr", root=gqa_root)[0]
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*n00.jpg"):
        item.load_image()
    with pytest.raises(FileNotFoundError, match=r"n00.jpg"):
        data.find_image("gqa.n00", root=gqa_root)


def test_unreadable_image_and_unknown_task(gqa_root):
    (gqa_root / "images" / "n00.jpg").write_bytes(b"not an image")
    item = data.load_questions("gqa", "ChooseAttr", root=gqa_root)[0]
    with pytest.raises(ValueError, match=r"unreadable image file .*n00.jpg"):
        item.load_image()
    with pytest.raises(ValueError, match="unknown task.*'chooseattr'.*valid tasks: ChooseAttr, QueryAttr"):
        data.load_questions("gqa", "chooseattr", root=gqa_root)


def test_broken_json_is_named(gqa_root):
    (gqa_root / "testdev_balanced_questions.json").write_text("{oops")
    with pytest.raises(ValueError, match="testdev_balanced_questions.json is not valid JSON"):
        data.load_questions("gqa", "ChooseAttr", root=gqa_root)
