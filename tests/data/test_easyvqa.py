"""easy-VQA question sets: task split, sampling, ids, images, errors."""

import json
import re

import pytest

from pidcore import data
from pidcore.data import easyvqa

TASKS = ["shape", "color", "yesno", "yesno-color", "yesno-shape", "yesno-negated"]


@pytest.fixture(scope="module")
def test_sets():
    return {task: data.load_questions("easy-vqa", task) for task in TASKS}


def test_tasks_partition_the_test_split(test_sets):
    assert len(test_sets["shape"]) + len(test_sets["color"]) + len(test_sets["yesno"]) == 9673
    parts = test_sets["yesno-color"] + test_sets["yesno-shape"] + test_sets["yesno-negated"]
    assert sorted(item.qid for item in parts) == sorted(item.qid for item in test_sets["yesno"])


def test_answers_match_the_task(test_sets):
    assert {item.answer for item in test_sets["shape"]} == set(easyvqa.SHAPES)
    assert {item.answer for item in test_sets["color"]} == set(easyvqa.COLORS)
    for task in ("yesno", "yesno-color", "yesno-shape", "yesno-negated"):
        assert {item.answer for item in test_sets[task]} == {"yes", "no"}
    assert all(re.search(r"\b(not|no)\b", item.question) for item in test_sets["yesno-negated"])
    assert sorted(data.answer_set("easy-vqa")) == sorted(set(easyvqa.SHAPES) | set(easyvqa.COLORS) | {"yes", "no"})


def test_shape_yes_no_answers_agree_with_the_image_shape(test_sets):
    shape_of = {item.image_id: item.answer for item in test_sets["shape"]}
    checked = 0
    for item in test_sets["yesno-shape"]:
        asked = re.search(r"\b(circle|rectangle|triangle)\b", item.question).group(1)
        if item.image_id in shape_of:
            assert item.answer == ("yes" if shape_of[item.image_id] == asked else "no"), item
            checked += 1
    assert checked > 500


def test_sampling_is_deterministic_per_seed_and_counts_per_task():
    first = data.load_questions("easy-vqa", ["color", "shape"], n=25, seed=3)
    again = data.load_questions("easy-vqa", ["color", "shape"], n=25, seed=3)
    other = data.load_questions("easy-vqa", ["color", "shape"], n=25, seed=4)
    assert first == again and first != other
    assert [item.task for item in first] == ["color"] * 25 + ["shape"] * 25
    assert len({item.qid for item in first}) == 50
    train = data.load_questions("easy-vqa", "shape", split="train", n=10)
    assert all(item.qid.startswith("easy-vqa.train.") for item in train)


def test_ids_have_no_slash_and_find_image_round_trips():
    items = data.load_questions("easy-vqa", "color", n=20, seed=1)
    for item in items:
        assert "/" not in item.qid and "/" not in item.image_id
        assert str(data.find_image(item.image_id)) == item.image_path
    image = items[0].load_image()
    assert image.mode == "RGB" and image.size == (64, 64)


def test_listing_is_json_ready():
    listing = data.list_datasets()
    assert set(listing) == {"easy-vqa", "gqa"}
    assert listing["easy-vqa"].task_names == TASKS
    assert json.loads(json.dumps(listing))["gqa"]["splits"][0] == "test"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: data.load_questions("vqa2", "color"), "unknown dataset 'vqa2'; valid datasets: easy-vqa, gqa"),
    (lambda: data.load_questions("easy-vqa", ["color", "size"]), "unknown task(s) 'size' for easy-vqa; valid tasks: shape"),
    (lambda: data.load_questions("easy-vqa", "color", split="val"), "unknown split 'val' for easy-vqa"),
    (lambda: data.load_questions("easy-vqa", "color", n=0), "n must be a positive integer"),
    (lambda: data.load_questions("easy-vqa", []), "tasks must be"),
    (lambda: data.find_image("easy-vqa.test.99999"), "unknown easy-vqa image"),
    (lambda: data.find_image("coco.1"), "bad image id 'coco.1'"),
    (lambda: data.find_image("a/b"), "bad image id"),
])
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
