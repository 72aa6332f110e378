"""The Studies tab's "Start a study" form: what request it makes, and where a refusal is shown. The refusal
comes from the service's own study validation (AnalysisService.submit_study, as POST /api/v1/studies)."""

import pytest

from app.service import AnalysisService
from app.settings import Settings
from app.ui import data
from app.ui import study_callbacks as tab
from app.ui.layout import STUDY_FORM_FIELDS

EASY_TASKS = ["shape", "color", "size", "count"]


def _form(**changes):
    values = {"models": ["demo"], "dataset": "easy-vqa", "tasks": ["shape"], "dataset_tasks": EASY_TASKS,
              "seed_cut": ["on"], "sweep": ["on"], "k": 9, "edges": ["image->question"], "windows": "",
              "recipes": "both", "n_questions": 400, "dims": [8, 8, 4], "gaussianize": "auto", "bootstrap": 200}
    return tab.build_study_request(**{**values, **changes})


def test_the_form_makes_the_api_request():
    from pidcore.study.run import StudyRequest

    # the form's defaults are the API's: the request validates to StudyRequest() apart from the task
    assert StudyRequest.from_dict(_form()) == StudyRequest(tasks=("shape",))
    request = _form(tasks=["all"], seed_cut=[], sweep=[], windows=" 0-4, 7 ; 10 - 12", recipes="seed",
                    edges=["image->question", "image->last"], n_questions=60, dims=[2, 2, 2],
                    gaussianize="none", bootstrap=10)
    assert request == {
        "models": ["demo"], "dataset": "easy-vqa", "tasks": EASY_TASKS, "seed_cut": False, "sweep": None,
        "knockouts": [{"edges": ["image->question", "image->last"], "layers": layers}
                      for layers in ([0, 4], [7, 7], [10, 12])],
        "recipes": ["seed"], "n_questions": 60, "dims": [2, 2, 2], "gaussianize": "none", "bootstrap": 10}
    assert _form(sweep=["on"], k=5)["sweep"] == {"edges": ["image->question"], "k": 5}
    assert _form(recipes="pidflow")["recipes"] == ["pidflow"]


def test_unreadable_windows_are_refused_next_to_the_runs():
    with pytest.raises(tab.FormProblem) as refused:
        _form(windows="0-4, last")
    problems = tab.refusal(refused.value)
    assert problems == [{"field": "runs", "message": "fixed windows: cannot read 'last'; write first-last decoder "
                                                     "layers, e.g. 0-4, 10-14"}]
    assert tab.field_messages(problems)[STUDY_FORM_FIELDS.index("runs")] == problems[0]["message"]


def test_a_refused_study_shows_each_problem_next_to_its_field():
    service = AnalysisService(Settings(redis_url="redis://127.0.0.1:1/0"))  # refused before Redis is used
    request = _form(tasks=["nope"], n_questions=0, sweep=["on"], k=0)
    with pytest.raises(data.DataError) as refused:
        data.submit_study(service, request)
    shown = dict(zip(STUDY_FORM_FIELDS, tab.field_messages(tab.refusal(refused.value)), strict=True))
    assert shown["runs"] == "Sweep k must be an integer >= 1 (got 0)"
    assert shown["tasks"].startswith("Unknown task(s) 'nope' for easy-vqa; valid tasks: shape, color")
    assert shown["n-questions"] == "Questions per task must be an integer >= 1"
    assert [name for name, text in shown.items() if text] == ["tasks", "runs", "n-questions"]


def test_the_deep_link_keeps_the_analysis_the_page_follows():
    assert tab.deep_link("s1") == "?tab=studies&study=s1"
    assert tab.deep_link("s1", "abc") == "?analysis=abc&tab=studies&study=s1"
