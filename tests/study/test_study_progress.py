"""A study's progress weighted by measured stage costs, and its time left (issue 18.4): known values of the
cost model on the demo's run plan, the CLI's whole bar and the dashboard's line."""

from __future__ import annotations

import pytest

from pidcore.study import progress
from pidcore.study.run import default_request, plan_runs


def test_the_demo_plan_weighs_extraction_by_questions_and_runs_and_analyses_by_layers():
    request = default_request(tasks=["color"])  # 400 questions, bootstrap 200, both recipes, auto
    runs = plan_runs(request, 6)  # baseline, the cut 0-5, sweep windows of 2: 0-1, 1-2, ..., 4-5, 5-5
    assert len({run.key for run in runs}) == 8
    # pooled layers to analyse: 7 (baseline) + 6 (cut) + 6 + 5 + 4 + 3 + 2 + 1 (sweep) = 34 per recipe
    assert sum(progress.reached(6, run.knockout) for run in runs) == 34
    assert progress.reached(6, {"layers": [2, 3]}, "own") == 7  # the run's own Y: every layer differs
    costs = progress.part_costs(request, 6, runs)
    assert costs["extract"] == pytest.approx(0.003 * 400 * 8)
    pidflow = 34 * (0.04 + 0.0004 * 200 + 0.5 * 2.5)  # flows not known before the plan: half their cost
    seed = 34 * (0.04 + 2 * 0.0004 * 200 + 2.5)  # the seed recipe's clustered latents: flows expected
    assert costs["analyses"] == pytest.approx(pidflow + seed)
    assert progress.extract_share(request) == pytest.approx(9.6 / (9.6 + pidflow + seed))
    copula = default_request(tasks=["color"], gaussianize="copula", bootstrap=0, recipes=["pidflow"])
    assert progress.extract_share(copula) == pytest.approx(9.6 / (9.6 + 34 * 0.04))  # extraction dominates


def test_analysis_cost_scales_with_layers_rounds_flows_and_questions():
    assert progress.analysis_cost(0, 200, True) == 0.0
    assert progress.analysis_cost(3, 0, False) == pytest.approx(3 * 0.04)
    assert progress.analysis_cost(3, 100, True) == pytest.approx(3 * (0.04 + 2 * 0.04 + 2.5))
    assert progress.analysis_cost(3, 100, True, n=800) == pytest.approx(2 * progress.analysis_cost(3, 100, True))


def test_time_left_at_the_pace_so_far():
    assert progress.eta_seconds(0.25, 60.0) == pytest.approx(180.0)
    assert progress.eta_seconds(0.005, 60.0) is None  # too early to tell
    assert progress.eta_seconds(1.0, 60.0) is None


def test_the_cli_bar_and_the_dashboard_say_the_time_left():
    from pidcore.study.run import _reporter

    report, close = _reporter(True)
    try:
        report(0.0, "demo · color", 0.0, "extracting")
    finally:
        close()
    from app.ui.study_callbacks import study_time_left, study_view

    info = {"id": "a" * 32, "state": "running", "progress": 0.25, "created_at": 1000.0, "parts": []}
    assert study_time_left(info, now=1060.0) == "about 3 min"  # 60 s for a quarter: 180 s left
    assert study_time_left({**info, "state": "succeeded"}, now=1060.0) == ""
    assert study_time_left({**info, "progress": 0.0}, now=1060.0) == ""
    text = str(study_view({**info, "created_at": __import__("time").time() - 60.0}))
    assert "left (at the pace so far" in text
