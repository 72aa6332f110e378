"""Progress weighted by measured stage cost, with the time left (issue 18.4): pidcore.pipeline.costs maps a
stage's own fraction onto the stages' expected shares and gives an ETA from the pace; `pidflow analyze`'s
progress line uses them on run_analysis's fixed split. Checked on a fake progress sequence with a fake clock."""

import io

import pytest

from app.cli import RUN_ANALYSIS_EXTRACT_END, AnalyzeProgress
from pidcore.pipeline import costs

REQUEST = {"model": "demo", "tasks": ["color"], "n_questions": 400, "dims": [8, 8, 4], "gaussianize": "auto",
           "bootstrap": 200, "knockout": None}


def _sequence(extract_s: float, analyze_s: float, steps: int = 20):
    """(seconds since start, run_analysis's fraction): extraction on 0..0.3, the analysis on 0.3..1, each at
    a steady pace within its stage."""
    for i in range(1, steps + 1):
        yield extract_s * i / steps, RUN_ANALYSIS_EXTRACT_END * i / steps
    for i in range(1, steps + 1):
        yield extract_s + analyze_s * i / steps, RUN_ANALYSIS_EXTRACT_END + (1 - RUN_ANALYSIS_EXTRACT_END) * i / steps


def test_stage_weights_follow_the_measured_costs():
    share = costs.extract_share(REQUEST, 6)
    cost = costs.estimate(REQUEST, 6)
    assert share == pytest.approx((costs.OVERHEAD_S / 2 + cost["extract_s"]) / cost["total_s"])
    # demo, 400 questions, auto, bootstrap 200, measured 2026-12-07: 18.8 s extraction, 1.7 s analysis, 8 s fixed
    assert (cost["extract_s"], cost["analyze_s"], cost["total_s"]) == pytest.approx((18.8, 1.715, 28.515))
    assert costs.weighted_progress("extract", 0.5, share) == pytest.approx(share / 2)
    assert costs.weighted_progress("analyze", 0.5, share) == pytest.approx(share + (1 - share) / 2)
    assert costs.reweighted(0.15, 0.3, share) == pytest.approx(share / 2)  # halfway through extraction
    assert costs.reweighted(0.3, 0.3, share) == pytest.approx(share)
    assert costs.reweighted(0.65, 0.3, share) == pytest.approx(share + (1 - share) / 2)
    assert costs.reweighted(1.0, 0.3, share) == 1.0 and costs.reweighted(-1, 0.3, share) == 0.0


def test_the_eta_holds_across_stages_when_progress_is_weighted_by_cost():
    share = 0.8  # extraction takes 80% of the time: 40 s, then 10 s of analysis
    extract_s, analyze_s = 40.0, 10.0
    for now, fraction in _sequence(extract_s, analyze_s):
        truth = extract_s + analyze_s - now
        weighted = costs.reweighted(fraction, RUN_ANALYSIS_EXTRACT_END, share)
        if weighted >= 0.05:  # before that the pace says nothing yet
            assert costs.eta_seconds(weighted, now) == pytest.approx(truth, abs=1e-9)
    # on the fixed split, the end of extraction (40 s) reads 30% done and says 93 s are left (truth: 10 s)
    assert costs.eta_seconds(RUN_ANALYSIS_EXTRACT_END, extract_s) == pytest.approx(93.33, abs=0.01)
    assert costs.eta_seconds(0.02, 3.0, estimate_s=50.0) == 47.0  # before 5%: what the estimate has left
    assert costs.eta_seconds(0.02, 3.0) is None and costs.eta_seconds(1.0, 9.0) == 0.0
    # counted from a first report at 20% (after the model loaded): 30% more in 6 s, so 10 s for the 50% left
    assert costs.eta_seconds(0.5, 6.0, since_progress=0.2) == pytest.approx(10.0)


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_the_cli_line_weights_stages_and_says_the_time_left():
    clock, stream = Clock(), io.StringIO()
    progress = AnalyzeProgress(REQUEST, stream=stream, clock=clock)
    share = costs.extract_share(REQUEST, costs.MODEL_LAYERS["demo"], overhead_s=0)
    assert progress.share == share == pytest.approx(18.8 / (18.8 + 1.715))  # the stages alone and progress.estimate_s == costs.estimate(REQUEST, 6)["total_s"]
    extract_s = 30.0
    analyze_s = extract_s * (1 - share) / share  # the stages take what the costs say
    for now, fraction in _sequence(extract_s, analyze_s):
        clock.now = now
        progress(fraction, "extract: 200/400 questions" if fraction < 0.3 else "layer 3")
    clock.now = extract_s + analyze_s
    progress(1.0, "done")
    lines = stream.getvalue().splitlines()  # not a terminal: a line at each 10% and at the end
    assert len(lines) == 11 and lines[-1].startswith("100% [####################] decomposing")
    assert lines[-1].endswith("(done)")
    halfway = next(line for line, (now, fraction) in zip(progress.lines, _sequence(extract_s, analyze_s),
                                                          strict=False) if fraction == RUN_ANALYSIS_EXTRACT_END * 0.5)
    assert halfway.startswith(f"{100 * share / 2:3.0f}% [") and "extracting, 15 s" in halfway
    assert f"{costs.describe_seconds(15.0 + analyze_s)} left" in halfway  # the pace: exact


def test_before_any_pace_the_estimate_gives_the_time_left():
    clock, stream = Clock(), io.StringIO()
    progress = AnalyzeProgress(REQUEST, stream=stream, clock=clock)
    clock.now = 2.0
    progress(0.0, "extract: 0/400 questions")
    left = costs.describe_seconds(costs.estimate(REQUEST, 6)["total_s"])  # the pace counts from the 1st report
    assert stream.getvalue() == f"  0% [....................] extracting, 2 s, {left} left · extract: 0/400 questions\n"


def test_the_dashboard_says_the_time_left_from_the_weighted_progress():
    from app.ui.page_callbacks import _progress_text

    job = {"id": "abc", "state": "running", "stage": "extract", "progress": 0.4, "created_at": 100.0}
    assert _progress_text(job, now=120.0) == ("Analysis abc: running the model over the questions (40 %), "
                                              "about 30 s left")
    assert _progress_text({**job, "progress": 0.02}, now=120.0).endswith("(2 %)")  # no pace yet: nothing said
