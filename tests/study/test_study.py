"""The study in the library: runs and sweep windows, request validation, prefix-reusing extraction
(bit-equal to plain knocked-out forwards), the report checked against the single analyses it was built
from, and its JSON / CSV / HTML exports."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch

from pidcore.study.run import (
    StudyRequest,
    default_request,
    pearson,
    plan_runs,
    run_study,
    sweep_windows,
    unique_runs,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # tests/conftest.py
    yield


def test_sweep_windows_are_centred_and_clipped():
    assert sweep_windows(6, 9) == [(0, 0, 4), (1, 0, 5), (2, 0, 5), (3, 0, 5), (4, 0, 5), (5, 1, 5)]
    windows = sweep_windows(32, 9)
    assert windows[16] == (16, 12, 20) and windows[0] == (0, 0, 4) and windows[31] == (31, 27, 31)
    assert all(last - first + 1 == 9 for _, first, last in windows[4:28])
    assert sweep_windows(5, 1) == [(c, c, c) for c in range(5)]
    assert sweep_windows(5, 4) == [(0, 0, 2), (1, 0, 3), (2, 1, 4), (3, 2, 4), (4, 3, 4)]
    with pytest.raises(ValueError):
        sweep_windows(0, 9)


def test_runs_share_extractions_when_their_knockouts_coincide():
    request = default_request(knockouts=[{"edges": ["image->last"], "layers": [1, 2]}])
    runs = plan_runs(request, 6)
    names = [run.name for run in runs]
    assert names == ["baseline", "image->last@1-2", "seed-cut", *(f"sweep@{c}" for c in range(6))]
    assert [run.centre for run in runs if run.kind == "sweep"] == list(range(6))
    # k = 9 asked on 6 decoder layers: the window is a third of the decoder, 2 layers, so no centre repeats a
    # window (9 layers covered the whole depth from four centres: one row four times)
    assert [run.knockout["layers"] for run in runs if run.kind == "sweep"] == [[0, 1], [1, 2], [2, 3], [3, 4],
                                                                                [4, 5], [5, 5]]
    assert list(unique_runs(runs)) == ["baseline", "image->last@1-2", "image->question@0-5",
                                       *(f"image->question@{a}-{b}" for a, b in ((0, 1), (1, 2), (2, 3), (3, 4),
                                                                                  (4, 5), (5, 5)))]
    with pytest.raises(ValueError, match="outside the model"):
        plan_runs(default_request(knockouts=[{"edges": ["image->last"], "layers": [3, 6]}]), 6)


def test_a_sweep_window_is_never_wider_than_a_third_of_the_decoder():
    from pidcore.study.run import sweep_k, sweep_used

    assert [sweep_k(9, layers) for layers in (1, 2, 3, 6, 27, 32, 40)] == [1, 1, 1, 2, 9, 9, 9]
    assert sweep_k(3, 32) == 3 and sweep_k(1, 6) == 1
    for layers in range(1, 41):
        runs = [run for run in plan_runs(default_request(), layers) if run.kind == "sweep"]
        windows = [tuple(run.knockout["layers"]) for run in runs]
        assert len(windows) == len(set(windows)) == layers  # one distinct window per centre
        assert all(last - first + 1 <= max(1, layers // 3) for first, last in windows)
    assert sweep_used(default_request(), 6) == {
        "k_requested": 9, "k_used": 2, "num_layers": 6,
        "reason": "9 layers asked; a window is at most a third of the model's 6 decoder layers"}
    assert sweep_used(default_request(), 32)["reason"] == "as requested"
    assert sweep_used(default_request(sweep=None), 32) is None


def test_the_sweep_heatmap_is_symmetric_unsaturated_and_marks_each_cut():
    from pidcore.study.figures import sweep_heatmap

    per_layer = lambda scale: [{"layer": layer, **{t: scale * (layer - 3) for t in  # noqa: E731
                                                   ("redundancy", "unique_vision", "unique_language", "synergy",
                                                    "total")}} for layer in range(7)]
    report = {"knockouts": [{"kind": "sweep", "model": "demo", "task": "color", "recipe": "pidflow", "centre": c,
                             "window": [c, min(c + 1, 5)], "edges": ["image->question"], "per_layer": per_layer(c + 1)}
                            for c in range(6)],
              "parts": [{"model": "demo", "task": "color", "sweep": {"k_requested": 9, "k_used": 2, "num_layers": 6,
                                                                      "reason": "..."}}]}
    fig = sweep_heatmap(report, "demo", "color", "pidflow", buttons=True)
    heat = fig.data[0]
    strongest = max(abs(v) for row in heat.z for v in row)
    assert strongest == 18 and heat.zmin == -heat.zmax and heat.zmax == pytest.approx(1.1 * strongest)
    outlines = [(shape.x0, shape.x1, shape.y0, shape.y1) for shape in fig.layout.shapes]
    assert outlines[0] == (0.5, 2.5, -0.5, 0.5) and outlines[5] == (5.5, 6.5, 4.5, 5.5)  # pooled layers fed
    assert fig.layout.yaxis.title.text == "window centre (image->question, k = 2 of 9 asked)"
    button = fig.layout.updatemenus[0].buttons[4]  # total
    assert button.args[0]["zmax"] == [pytest.approx(1.1 * 18)]


def test_small_multiples_draw_the_totals_band_when_there_are_intervals():
    from pidcore.study.figures import small_multiples

    def layers(with_ci):
        out = []
        for index in range(7):
            entry = {"layer": index, "redundancy": 0.1, "unique_vision": 0.2, "unique_language": 0.3, "synergy": 0.05,
                     "total": 0.65}
            if with_ci:
                entry["ci"] = {t: [entry[t] - 0.05, entry[t] + 0.05] for t in entry if t != "layer"}
            out.append(entry)
        return out

    for with_ci, traces in ((True, 6), (False, 4)):
        report = {"request": {"models": ["demo"], "tasks": ["color"]},
                  "series": [{"model": "demo", "task": "color", "recipe": "pidflow", "kind": "baseline",
                              "layers": layers(with_ci)}]}
        fig = small_multiples(report, "pidflow")
        assert len(fig.data) == traces
    fig = small_multiples({**report, "series": [{**report["series"][0], "layers": layers(True)}]}, "pidflow")
    band = next(trace for trace in fig.data if trace.meta == "ci:total")
    assert list(band.y) == pytest.approx([0.7] * 7 + [0.6] * 7) and band.fill == "toself"
    assert list(fig.data[0].customdata[0]) == pytest.approx([0.05, 0.15])  # each term's interval in its hover


def test_bad_study_requests_list_every_problem():
    with pytest.raises(ValueError) as error:
        StudyRequest.from_dict({"models": [], "recipes": ["nope"], "sweep": {"edges": ["x"], "k": 0},
                                "n_questions": 0, "colour": 1, "knockouts": [{"edges": ["image->last"]}]})
    message = str(error.value)
    for part in ("unknown field 'colour'", "models must be", "recipes must be", "sweep edges", "sweep k",
                 "n_questions must be", "knockouts[0] must be"):
        assert part in message
    assert StudyRequest.from_dict({}).sweep == {"edges": ["image->question"], "k": 9} == StudyRequest().sweep
    assert StudyRequest.from_dict({"sweep": None}).sweep is None


def test_pearson_known_answers():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None


def test_reused_prefix_is_bit_equal_to_plain_knocked_out_forwards():
    from pidcore.data import answer_set, load_questions
    from pidcore.extract import Knockout, extract
    from pidcore.extract.multirun import extract_runs
    from pidcore.pipeline.analysis import _adapter

    adapter = _adapter("demo")
    items = load_questions("easy-vqa", ["color"], n=20)
    answers = answer_set("easy-vqa")
    runs = {"baseline": None, "late": Knockout(["image->question"], (3, 5)),
            "early": Knockout(["image->question", "image->last"], (1, 2))}
    calls = {index: 0 for index in range(adapter.num_layers)}
    hooks = [layer.register_forward_pre_hook(lambda module, args, index=index: calls.__setitem__(index, calls[index] + 1))
             for index, layer in enumerate(adapter.decoder_layers)]
    original = type(adapter.decoder_layers[0]).forward
    computed = {index: 0 for index in range(adapter.num_layers)}

    def counting(self, *args, **kwargs):
        computed[list(adapter.decoder_layers).index(self)] += 1
        return original(self, *args, **kwargs)
    try:
        type(adapter.decoder_layers[0]).forward = counting
        reused = extract_runs(adapter, items, answers=answers, runs=runs, batch_size=8)
    finally:
        type(adapter.decoder_layers[0]).forward = original
        for hook in hooks:
            hook.remove()
    batches = 3
    assert all(count == 3 * batches for count in calls.values()), "every layer's hooks ran in every run"
    # layer 0 is computed only by the baseline; layers 1-2 by the baseline and the early window
    assert [computed[index] // batches for index in range(6)] == [1, 2, 2, 3, 3, 3]
    assert not any("forward" in layer.__dict__ for layer in adapter.decoder_layers), "forwards restored"
    for name, knockout in runs.items():
        plain = extract(adapter, items, answers=answers, knockout=knockout)
        for field in ("vision", "language", "target", "p_correct", "predicted"):
            assert np.array_equal(getattr(reused[name], field), getattr(plain, field)), (name, field)
    assert not np.array_equal(reused["late"].language[6], reused["baseline"].language[6])
    assert np.array_equal(reused["late"].language[3], reused["baseline"].language[3])


@pytest.fixture(scope="module")
def two_model_study(tmp_path_factory):
    """A copy of the demo model as a second model: identical trajectories, so every r is 1."""
    from pidcore.demo import demo_model_path

    twin = tmp_path_factory.mktemp("models") / "demo-twin"
    shutil.copytree(demo_model_path(), twin)
    request = default_request(models=["demo", str(twin)], tasks=["shape"], n_questions=160, gaussianize=False, seed_variance=0.8,
                              dims=[3, 3, 2], bootstrap=20, sweep={"edges": ["image->question"], "k": 3},
                              knockouts=[{"edges": ["image->last"], "layers": [2, 3]}])
    seen = []
    with threads_one():
        report = run_study(request, progress=lambda *event: seen.append(event))
    return request, report, seen, str(twin)


class threads_one:
    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def test_study_report_matches_the_single_analyses(two_model_study):
    from pidcore.pipeline.analysis import AnalysisRequest, run_analysis

    request, report, seen, twin = two_model_study
    assert report["schema"] == "pidflow.study/1"
    assert len(report["headline"]) == 2 * 1 * 2  # models x tasks x recipes
    rows = {(row["model"], row["recipe"]): row for row in report["headline"]}
    seed_part = next(part for part in report["parts"] if part["model"] == "demo")
    assert rows[("demo", "seed")]["measure"] == "mmi" and rows[("demo", "seed")]["dims"] == seed_part["seed_dims"]["dims"]
    for recipe in ("pidflow", "seed"):
        row = rows[("demo", recipe)]
        series = next(s for s in report["series"] if s["model"] == "demo" and s["recipe"] == recipe
                      and s["run"] == "image->last@2-3")
        analysis = next(a for a in _analyses(report, "demo", recipe, "image->last@2-3"))
        single = run_analysis(AnalysisRequest.from_dict(analysis))
        last = single["runs"]["baseline"]["layers"][-1]
        assert row["total_bits"] == pytest.approx(last["total"], abs=1e-12)
        for term in ("redundancy", "unique_vision", "unique_language", "synergy"):
            assert row["shares"][term] == pytest.approx(last[term] / last["total"], abs=1e-12)
            assert row["terms_ci_bits"][term] == pytest.approx(last["ci"][term], abs=1e-12)
        peak = max(single["runs"]["baseline"]["layers"], key=lambda layer: layer["unique_vision"])["layer"]
        assert row["unique_vision_peak_layer"] == peak
        knock = next(k for k in report["knockouts"] if k["model"] == "demo" and k["recipe"] == recipe
                     and k["run"] == "image->last@2-3")
        for key in ("trapped_unique_vision", "compensatory_synergy", "information_cost",
                    "answer_probability_change", "accuracy_change"):
            assert knock[key] == pytest.approx(single["effects"][key], abs=1e-12), key
        assert [layer["total"] for layer in series["layers"]] == pytest.approx(
            [layer["total"] for layer in single["runs"]["knockout"]["layers"]], abs=1e-12)
    # layers before a window: the same target and the same features -> the delta is exactly zero
    sweep = next(k for k in report["knockouts"] if k["kind"] == "sweep" and k["centre"] == 4
                 and k["model"] == "demo" and k["recipe"] == "pidflow")
    assert sweep["window"] == [4, 5]  # k = 3 asked, 2 used: at most a third of the 6 decoder layers
    lo, hi = sweep["intervals"]["information_cost"]  # paired bootstrap interval (same questions in both runs)
    assert lo <= sweep["information_cost"] <= hi or hi - lo > 0
    assert all("draws" not in layer for series in report["series"] for layer in series["layers"])
    # identical models: every trajectory correlates perfectly
    assert {row["task"] for row in report["correlations"]} == {"shape"} and len(report["correlations"]) == 2
    found = report["findings"]  # (d) on identical models: r = 1 for every term that varies
    assert [pair["models"] for pair in found["correlations"]] == [["demo", twin]] * 2
    for pair in found["correlations"]:
        terms = pair["claim"]["detail"]["terms"]
        assert all(t["r"] is None or t["r"] == pytest.approx(1.0) for t in terms.values())
    for row in report["correlations"]:
        assert row["models"] == ["demo", twin]
        assert all(row[term] == pytest.approx(1.0) for term in ("redundancy", "unique_vision", "total"))
    # progress: overall never decreases and ends at 1, each part reports its own fraction
    overall = [event[0] for event in seen]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    assert {event[1] for event in seen} == {"demo · shape", f"{twin} · shape"}


def _analyses(report, model, recipe, run):
    """The AnalysisRequest dicts of a run's analysis, rebuilt from the report's request and parts."""
    from pidcore.study.run import StudyRequest, analysis_request

    request = StudyRequest.from_dict(report["request"])
    part = next(p for p in report["parts"] if p["model"] == model)
    spec = next(r for r in part["runs"] if r["name"] == run)
    dims = (part.get("seed_dims") or {}).get("dims")
    yield analysis_request(request, model, part["task"], recipe, spec["knockout"], dims).to_dict()


def test_exports_round_trip(two_model_study):
    from pidcore.study.export import to_csv, to_html, to_json

    _, report, _, _ = two_model_study
    assert json.loads(to_json(report)) == json.loads(json.dumps(report))
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    shares = {(r["model"], r["recipe"], r["quantity"]): float(r["value"]) for r in rows
              if r["section"] == "headline" and r["quantity"].startswith("share_")}
    for row in report["headline"]:
        for term, share in row["shares"].items():
            assert shares[(row["model"], row["recipe"], f"share_{term}")] == pytest.approx(share, rel=1e-12)
    layer_rows = [r for r in rows if r["section"] == "layer" and r["quantity"] == "total_bits"]
    assert len(layer_rows) == sum(len(series["layers"]) for series in report["series"])
    assert all(r["lo"] and r["hi"] for r in layer_rows), "intervals travel into the CSV"
    page = to_html(report, plotly_js="/* plotly */")
    assert page.count('class="plotly-graph-div"') == 2 + 4  # small multiples per recipe, heatmap per model x recipe
    assert "cdn" not in page.lower() and "<script src" not in page
    assert "U_vision peak layer" in page and "image-&gt;last@2-3" in page


def test_question_id_lists_and_counts(tmp_path):
    from pidcore.data import load_questions
    from pidcore.study.run import read_question_ids, study_questions

    pool = load_questions("easy-vqa", ["shape"], n=None)
    listed = [item.qid for item in pool[:30]] + ["easy-vqa.test.999999"]  # one id not in the split
    path = tmp_path / "ids.txt"
    path.write_text("# task,question id\n" + "".join(f"shape,{q.split('.', 1)[1] if i % 2 else q}\n"
                                                       for i, q in enumerate(listed)))
    ids = read_question_ids(path)
    assert list(ids) == ["shape"] and len(ids["shape"]) == 31
    request = default_request(tasks=["shape"], n_questions=20, question_ids=ids, correct_only=True, recipes=["pidflow"],
                              sweep=None, seed_cut=False, gaussianize="none", dims=[2, 2, 2], bootstrap=0)
    items, found = study_questions(request, "shape")
    assert found == 30 and len(items) == 20 and {item.qid for item in items} <= set(listed[:30])
    with threads_one():
        report = run_study(request)
    part = report["parts"][0]
    assert (part["n_listed"], part["n_asked"]) == (30, 20) and 14 <= part["n_kept"] <= 20
    assert report["headline"][0]["n_questions"] == part["n_kept"]
    with pytest.raises(ValueError, match="question_ids names task"):
        default_request(tasks=["color"], question_ids={"shape": ["1"]})
    (tmp_path / "bad.txt").write_text("shape\n")
    with pytest.raises(ValueError, match="expected 'task,question_id'"):
        read_question_ids(tmp_path / "bad.txt")
