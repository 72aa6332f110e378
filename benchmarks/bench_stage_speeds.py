"""Stage speeds behind the dashboard's run-time estimate (pidcore/pipeline/costs.py): extraction seconds per
question and run on the demo model, and PID seconds per layer for each Gaussianization mode, plus per
bootstrap round. Usage: python benchmarks/bench_stage_speeds.py [--questions 200]. Prints the figures;
copy them into pidcore/pipeline/costs.py when they change (say how busy the machine was)."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
