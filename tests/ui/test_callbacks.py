"""Pure helpers behind the callbacks: form -> request, URL parsing, question filtering, effects table,
and data.py's error translation."""

import pytest

from app.service import JobNotReady, ServiceUnavailable
from app.ui import callbacks, data
from tests.ui.demo_result import make_document

FORM = dict(model="demo", dataset="easy-vqa", tasks=["color"], n_questions=50, pooling="mean",
            target="logprobs", measure="broja", dims=[16, 16, 8], bootstrap=0, edges=[], window=[0, 5])


def test_form_builds_a_contract_request():
    request = callbacks.build_request(**FORM)
    assert request["knockout"] is None and request["n_questions"] == 50 and request["dims"] == [16, 16, 8]
    assert request["gaussianize"] == "auto"
    assert callbacks.build_request(**FORM, gaussianize="copula")["gaussianize"] == "copula"
    with_knockout = callbacks.build_request(**{**FORM, "edges": ["image->question"], "window": [2, 4]})
    assert with_knockout["knockout"] == {"edges": ["image->question"], "layers": [2, 4]}


@pytest.mark.parametrize("field, value, message", [
    ("tasks", [], "at least one task"), ("n_questions", None, "questions per task"),
    ("n_questions", 0, "questions per task"), ("dims", [16, None, 8], "PCA sizes"), ("bootstrap", -1, "bootstrap"),
])
def test_form_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        callbacks.build_request(**{**FORM, field: value})


def test_url_query():
    assert callbacks.parse_location("?analysis=abc") == {"analysis": "abc"}
    assert callbacks.parse_location("?share=tok&x=") == {"share": "tok"}
    assert callbacks.parse_location(None) == {}


def test_compare_takes_an_id_or_a_pasted_dashboard_link():
    assert callbacks.analysis_ref("  abc123 ") == "abc123"
    assert callbacks.analysis_ref("http://host:8000/?analysis=abc123&x=1") == "abc123"
    assert callbacks.analysis_ref("/?analysis=abc123") == "abc123"
    assert callbacks.analysis_ref(None) == ""


def test_recent_analyses_most_recent_first_once_and_bounded():
    recent = None
    for i in range(25):
        recent = callbacks.remember(recent, f"id{i}", f"label {i}")
    assert len(recent) == callbacks.RECENT_KEPT == 20
    assert [entry["id"] for entry in recent[:2]] == ["id24", "id23"] and recent[-1]["id"] == "id5"
    recent = callbacks.remember(recent, "id10", "label 10 again")
    assert [entry["id"] for entry in recent[:2]] == ["id10", "id24"] and len(recent) == 20
    assert [entry["id"] for entry in recent].count("id10") == 1
    # a corrupt local-storage value is dropped, not a crash
    assert callbacks.remember([{"id": "a", "label": "A"}, "junk", None], "b", "B") == [
        {"id": "b", "label": "B"}, {"id": "a", "label": "A"}]
    options = callbacks.recent_options(recent, current="id10")
    assert options[0] == {"label": "label 24 · id24", "value": "id24"}
    assert "id10" not in [option["value"] for option in options] and len(options) == 19


def test_question_filters():
    questions = make_document({"tasks": ["color", "shape"]}, n_questions=8)["questions"]
    assert len(callbacks.filter_questions(questions, None, None, "all")) == 8
    assert [q["qid"] for q in callbacks.filter_questions(questions, "IMAGE 3", None, "all")] == ["easy-vqa.test.3"]
    incorrect_shape = callbacks.filter_questions(questions, "", "shape", "incorrect")
    assert [q["qid"] for q in incorrect_shape] == ["easy-vqa.test.1", "easy-vqa.test.3", "easy-vqa.test.5",
                                                   "easy-vqa.test.7"]
    assert callbacks.filter_questions(questions, "", "color", "incorrect") == []


def test_effects_table_lists_changes_and_metrics_in_plain_words():
    document = make_document({"tasks": ["color"], "knockout": {"edges": ["image->last"], "layers": [0, 1]}})

    def rows(doc):
        table = callbacks.effects_table(doc).children[1].children[1].children
        return [(row.children[0].children, row.children[1].children) for row in table]

    def name(heading):
        return heading[0] if isinstance(heading, list) else heading

    names = [name(heading) for heading, _ in rows(document)]
    values = dict((name(heading), value) for heading, value in rows(document))
    assert values["accuracy change"] == "-0.150" and "vision-only information left in late layers" in names
    assert "trapped unique vision" not in str(callbacks.effects_table(document))
    assert "image->last attention blocked in decoder layers 0-1" in str(callbacks.effects_table(document))
    heading = next(h for h, _ in rows(document) if name(h) == "total information lost")
    assert "drop of the total" in heading[2].title  # the "?" says what it is
    assert "No knockout" in str(callbacks.effects_table(make_document({"tasks": ["color"]})))
    document["effects"]["accuracy_change"] = -0.25  # the effects' own figure wins; no second row
    names = [name(heading) for heading, _ in rows(document)]
    assert names.count("accuracy change") == 1
    assert names.index("vision-only information left in late layers") < names.index("accuracy change")


class BrokenService:
    def __init__(self, exc):
        self.exc = exc

    def result(self, _):
        raise self.exc


@pytest.mark.parametrize("exc, message", [
    (KeyError("unknown analysis 'x'"), "unknown analysis 'x'"),
    (JobNotReady({"id": "x", "state": "running"}), "not finished yet (running)"),
    (ServiceUnavailable("Redis down"), "unavailable: Redis down"),
    (RuntimeError("boom"), "RuntimeError: boom"),
])
def test_data_errors_read_plainly(exc, message):
    with pytest.raises(data.DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.result(BrokenService(exc), "x")


def test_layer_notes_list_the_estimators_warnings_per_run_and_layer():
    document = make_document({"knockout": {"edges": ["image->question"], "layers": [0, 2]}}, num_layers=3,
                             n_questions=4)
    assert callbacks.layer_notes(document) is None
    document["runs"]["knockout"]["layers"][1]["warnings"] = ["layer 1: latents capped near 10 bits"]
    for layer in document["runs"]["baseline"]["layers"]:
        layer["warnings"] = ["y: the data has rank 3 < 8 requested components; keeping 3"]
    notes = callbacks.layer_notes(document)
    items = [item.children for item in notes[1].children]
    assert items == ["baseline: target: the data has rank 3 < 8 requested components; keeping 3",
                     "knockout: layer 1: latents capped near 10 bits"]


def test_view_urls_round_trip():
    assert callbacks.view_search(None, "results", None) == ""
    search = callbacks.view_search("abc", "questions", "easy-vqa.test.3")
    assert search == "?analysis=abc&tab=questions&q=easy-vqa.test.3"
    assert callbacks.parse_location(search) == {"analysis": "abc", "tab": "questions", "q": "easy-vqa.test.3"}
    assert callbacks.view_search("abc", "results", "easy-vqa.test.3") == "?analysis=abc&tab=results"  # q: questions only
    assert callbacks.view_search("abc", "results", None, share="tok") == "?share=tok&tab=results"  # no id in shares
    studies = callbacks.view_search("abc", "studies", None, study="s1")  # the Studies tab keeps its study
    assert studies == "?analysis=abc&tab=studies&study=s1"
    assert callbacks.parse_location(studies)["study"] == "s1"
    assert callbacks.view_search("abc", "results", None, study="s1") == "?analysis=abc&tab=results"
    assert callbacks.wanted_tab({"tab": "compare"}) == "compare"
    assert callbacks.wanted_tab({"tab": "bogus"}) == "results" and callbacks.wanted_tab({}, "new") == "new"


class ListingService:
    """Analyses a, b, c exist on the server (c still running); d was deleted."""

    settings = None

    def status(self, analysis_id):
        if analysis_id == "d":
            raise KeyError("unknown analysis 'd'")
        return {"id": analysis_id, "state": "running" if analysis_id == "c" else "succeeded"}

    def list_analyses(self, token, offset=0, limit=20):
        items = [{"id": i, "state": self.status(i)["state"], "created_at": 0} for i in ("c", "b", "a")]
        return {"total": 3, "offset": offset, "limit": limit, "items": items[:limit]}


def test_compare_offers_live_recent_analyses_then_the_servers_finished_ones():
    recent = [{"id": "d", "label": "deleted"}, {"id": "a", "label": "mine"}, "junk"]
    candidates = callbacks.compare_candidates(ListingService(), recent, token=None)
    assert [c["id"] for c in candidates] == ["a", "b"]  # d is gone, c is not finished, a only once
    assert candidates[0]["label"] == "mine" and candidates[1]["label"].startswith("on the server")
