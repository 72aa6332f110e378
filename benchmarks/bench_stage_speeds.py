"""Stage speeds behind the dashboard's run-time estimate (pidcore/pipeline/costs.py): extraction seconds per
question and run on the demo model, and PID seconds per layer for each Gaussianization mode, plus per
bootstrap round. Usage: python benchmarks/bench_stage_speeds.py [--questions 200]. Prints the figures;
copy them into pidcore/pipeline/costs.py when they change (say how busy the machine was).

``--real-width [--n 1000 --width 4096 --repeats 5]``: instead, CPU-seconds per variable of each stage of the
default analysis at a 7B model's width (one float16 source of pidcore.synthetic.real_width_system): the input
check (float16 -> float64), scale_free, the plan's variance-weighted Jarque-Bera (probe layers only), the
copula's normal scores, the PCA (fit + transform), and one layer's Gaussian PID stage with 200 bootstrap rounds;
the minimum and median over --repeats, single-threaded BLAS as in the pipeline."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--real-width", action="store_true", help="per-stage CPU-s at real width instead")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.real_width:
        real_width_stages(args.n, args.width, args.repeats)
        return
    from pidcore.pipeline.analysis import AnalysisRequest, analyze_layers, extract_features

    request = AnalysisRequest.from_dict({"n_questions": args.questions, "dims": [8, 8, 4], "gaussianize": "none",
                                         "bootstrap": 0})  # the default request bootstraps; timed apart below
    extract_features(AnalysisRequest.from_dict({"n_questions": 8, "dims": [1, 1, 1], "bootstrap": 0}))  # load once
    start = time.perf_counter()
    features = extract_features(request)["baseline"]
    extract_s = time.perf_counter() - start
    print(f"extract: {extract_s:.2f} s for {args.questions} questions = {extract_s / args.questions * 1000:.1f} ms/question"
          f" ({features.num_layers} layers)", flush=True)
    for mode in ("none", "copula", "auto"):
        start = time.perf_counter()
        analyze_layers(features, AnalysisRequest.from_dict({**request.to_dict(), "gaussianize": mode}))
        spent = time.perf_counter() - start
        print(f"analyze {mode}: {spent:.2f} s = {spent / features.num_layers:.3f} s/layer", flush=True)
    rounds = 20
    start = time.perf_counter()
    analyze_layers(features, AnalysisRequest.from_dict({**request.to_dict(), "bootstrap": rounds}))
    spent = time.perf_counter() - start
    print(f"analyze none + bootstrap {rounds}: {spent:.2f} s = {spent / features.num_layers / rounds:.4f} s/layer/round",
          flush=True)
    print(f"load average: {os.getloadavg()}")


def real_width_stages(n: int, width: int, repeats: int) -> None:
    """CPU-s per variable of each stage of the default analysis at (n, width) float16 (see the docstring)."""
    import warnings

    import numpy as np
    from threadpoolctl import threadpool_limits

    from pidcore.gaussianize.copula import normal_scores
    from pidcore.gaussianize.latents import _reducer
    from pidcore.gaussianize.plan import weighted_jarque_bera
    from pidcore.pipeline.layerwise import _fold_ids, _result
    from pidcore.pipeline.validation import scale_free
    from pidcore.reduce.pca import check_samples
    from pidcore.synthetic import real_width_system

    system = real_width_system(n=n, width=width, layers=1, dtype=np.float16)
    raw = system.x1[0]

    def timed(function, *arguments):
        spent = []
        for _ in range(repeats):
            start = time.process_time()
            out = function(*arguments)
            spent.append(time.process_time() - start)
        return out, spent

    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stages = {}
        checked, stages["check (float16 -> float64)"] = timed(check_samples, raw, "x1")
        free, stages["scale_free"] = timed(scale_free, checked)
        _, stages["variance-weighted Jarque-Bera (plan)"] = timed(weighted_jarque_bera, free)
        scores, stages["normal scores (copula)"] = timed(normal_scores, free)
        reducer, stages["PCA fit (8 components)"] = timed(_reducer, scores, 8, "x1")
        z1, stages["PCA transform"] = timed(reducer.transform, scores)
        z2 = _reducer(normal_scores(scale_free(check_samples(system.x2[0]))), 8, "x2").transform(
            normal_scores(scale_free(check_samples(system.x2[0]))))
        z = np.hstack([z1, z2, scale_free(system.y)])
        dims = (8, 8, system.y.shape[1])
        _, stages["Gaussian PID + 200 bootstrap rounds (one layer)"] = timed(
            lambda: _result(z, _fold_ids(n, 2, 0), dims, "broja", 200, 0, shared=True))
    print(f"per-variable stages at n={n} x width {width} (float16), CPU-s min / median of {repeats}:")
    for name, spent in stages.items():
        print(f"  {name:48s} {min(spent):7.3f} / {float(np.median(spent)):7.3f}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
