"""The `pidflow` command line: run an analysis locally or through a server, or serve everything."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.service import DEFAULT_REQUEST as DEFAULTS


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULTS["model"], help="demo, a Hugging Face id or a local folder")
    parser.add_argument("--dataset", default=DEFAULTS["dataset"], help="easy-vqa or gqa")
    parser.add_argument("--task", dest="tasks", action="append", help="task name (repeatable)")
    parser.add_argument("--split", default=DEFAULTS["split"])
    parser.add_argument("--n-questions", type=int, help=f"questions per task (default {DEFAULTS['n_questions']}; "
                        "with --features: every question of the file)")
    parser.add_argument("--correct-only", action="store_true", help="keep correctly answered questions")
    parser.add_argument("--language-pooling", choices=["mean", "last"], default=DEFAULTS["language_pooling"])
    parser.add_argument("--target", choices=["logprobs", "hidden"], default=DEFAULTS["target"])
    parser.add_argument("--measure", choices=["broja", "mmi"], default=DEFAULTS["measure"])
    parser.add_argument("--dims", type=int, nargs=3, default=DEFAULTS["dims"], metavar=("DV", "DL", "DY"),
                        help=f"PCA sizes of vision, language, target (default {' '.join(map(str, DEFAULTS['dims']))})")
    parser.add_argument("--gaussianize", choices=["auto", "none", "copula", "flow"], default=DEFAULTS["gaussianize"],
                        help="auto (default): normal scores per coordinate, plus joint flows when they raise the "
                             "held-out likelihood; none: PCA only; copula; flow (always the joint flows)")
    parser.add_argument("--no-gaussianize", dest="gaussianize", action="store_const", const="none",
                        help="same as --gaussianize none")
    parser.add_argument("--estimator", choices=["corrected", "plugin"], default=DEFAULTS["estimator"],
                        help="corrected (default): bias-corrected parts; plugin: the uncorrected plug-in estimate")
    parser.add_argument("--bootstrap", type=int, default=DEFAULTS["bootstrap"],
                        help=f"bootstrap rounds of the 95%% intervals (default {DEFAULTS['bootstrap']}; 0: none)")
    parser.add_argument("--knockout-target", choices=["baseline", "own"], default=DEFAULTS["knockout_target"],
                        help="the knockout run's target Y: the baseline's (default) or its own")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument(
        "--knockout",
        action="append",
        metavar="EDGE",
        help="knockout edge: image->question, image->last, question->last, last->last, question->image "
             "(prefix-LM models only) (repeatable)",
    )
    parser.add_argument(
        "--knockout-layers", type=int, nargs=2, metavar=("FIRST", "LAST"), help="inclusive decoder-layer window"
    )


LOADING_FLAGS = (("device", "--device"), ("dtype", "--dtype"), ("device_map", "--device-map"),
                 ("quantization", "--quantization"), ("batch_size", "--batch-size"))


def _add_loading_options(parser: argparse.ArgumentParser, batch_size: bool = True, where: str = "") -> None:
    """How the model is loaded and batched (pidcore.extract.loading); each flag sets the PIDFLOW_* variable
    of the same name (`where`: which processes it reaches, for the help)."""
    from pidcore.extract.loading import DEVICE_MAPS, DTYPES, QUANTIZATIONS

    group = parser.add_argument_group("model loading (default: PIDFLOW_DEVICE, PIDFLOW_DTYPE, PIDFLOW_DEVICE_MAP, "
                                      "PIDFLOW_QUANTIZATION, PIDFLOW_BATCH_SIZE)" + where)
    group.add_argument("--device", help="cuda, cuda:1, cpu, mps (default: cuda when available)")
    group.add_argument("--dtype", choices=list(DTYPES), help="weights and activations (default: bfloat16 on GPU, "
                                                              "float32 on CPU)")
    group.add_argument("--device-map", choices=list(DEVICE_MAPS),
                       help="spread a model larger than one GPU over all visible GPUs (and CPU) with accelerate")
    group.add_argument("--quantization", choices=list(QUANTIZATIONS), help="8-/4-bit weights (needs bitsandbytes)")
    if batch_size:
        group.add_argument("--batch-size", help="questions per forward pass, or auto: the largest that fits, found "
                                                "by a short search and remembered per model and device (default 8); "
                                                "out of memory halves a batch instead of failing")


def _loading_env(args: argparse.Namespace) -> dict[str, str]:
    """The PIDFLOW_* variables of the loading flags given (checked); {} when none was."""
    from pidcore.extract.loading import LoadOptions

    given = {name: getattr(args, name, None) for name, _ in LOADING_FLAGS}
    if all(value is None for value in given.values()):
        return {}
    defaults = LoadOptions.from_env()
    options = LoadOptions(**{name: value if value is not None else getattr(defaults, name)
                             for name, value in given.items()}).checked()
    names = {"device": "PIDFLOW_DEVICE", "dtype": "PIDFLOW_DTYPE", "device_map": "PIDFLOW_DEVICE_MAP",
             "quantization": "PIDFLOW_QUANTIZATION", "batch_size": "PIDFLOW_BATCH_SIZE"}
    return {names[name]: str(getattr(options, name)) for name, value in given.items() if value is not None}


def _given_loading_flags(args: argparse.Namespace) -> list[str]:
    return [flag for name, flag in LOADING_FLAGS if getattr(args, name, None) is not None]


def _apply_loading_options(args: argparse.Namespace) -> None:
    """Set the loading flags' PIDFLOW_* variables in this process (the model loads here)."""
    import os

    os.environ.update(_loading_env(args))


def _request_dict(args: argparse.Namespace) -> dict:
    request = {
        "model": args.model,
        "dataset": args.dataset,
        "tasks": args.tasks or list(DEFAULTS["tasks"]),
        "split": args.split,
        "n_questions": DEFAULTS["n_questions"] if args.n_questions is None else args.n_questions,
        "correct_only": args.correct_only,
        "language_pooling": args.language_pooling,
        "target": args.target,
        "measure": args.measure,
        "dims": list(args.dims),
        "gaussianize": args.gaussianize,
        "estimator": args.estimator,
        "bootstrap": args.bootstrap,
        "knockout_target": args.knockout_target,
        "seed": args.seed,
        "knockout": None,
    }
    if args.knockout or args.knockout_layers:
        if not (args.knockout and args.knockout_layers):
            raise ValueError("--knockout and --knockout-layers must be given together")
        request["knockout"] = {"edges": args.knockout, "layers": list(args.knockout_layers)}
    return request


def _cmd_analyze(args: argparse.Namespace) -> int:
    loading = _given_loading_flags(args)
    if loading and (args.features or args.server):
        raise ValueError(f"{', '.join(loading)}: how a model is loaded applies where it runs: with --features no "
                         f"model runs, and with --server the server's workers decide (set PIDFLOW_DEVICE, "
                         f"PIDFLOW_BATCH_SIZE, ... where they run, or `pidflow serve --batch-size ...`)")
    if args.features:
        return _cmd_analyze_features(args)
    request = _request_dict(args)
    if args.server:
        from app.client import run_remote_analysis

        result = run_remote_analysis(args.server, request, token=args.token)
    else:
        from pidcore.pipeline.analysis import AnalysisRequest, run_analysis

        local_gate(request)  # what the server's gate refuses, refused here before any model loads
        _apply_loading_options(args)
        result = run_analysis(AnalysisRequest.from_dict(request), progress=AnalyzeProgress(request))
    return _write_result(result, args.output)


#: the command-line flag of each request field a refusal names
FIELD_FLAGS = {"n_questions": "--n-questions", "dims": "--dims", "dataset": "--dataset", "tasks": "--task",
               "split": "--split", "model": "--model", "knockout": "--knockout/--knockout-layers",
               "bootstrap": "--bootstrap", "target": "--target"}


def local_gate(request: dict) -> None:
    """The feasibility check the server's gate runs on an analysis (app.precheck: dataset here, questions per
    task, PCA sizes against the model and the answers, estimable at this n and bootstrap; the knockout window
    against the model's local config), for a local run. ValueError naming the field and its flag (exit 2)."""
    from app.precheck import Refused, _local_model, check, check_window

    try:
        check(request)
        info = _local_model(request.get("model", "demo"))
        check_window(request.get("knockout"), info.get("num_layers"), info.get("knockout_edges"), info.get("family"))
    except Refused as exc:
        field = exc.field or "request"
        flag = FIELD_FLAGS.get(field)
        raise ValueError(f"{field}{f' ({flag})' if flag else ''}: {exc}") from exc


#: run_analysis reports extraction on 0..0.3 of its progress and the analysis on the rest (a fixed split)
RUN_ANALYSIS_EXTRACT_END = 0.3


class AnalyzeProgress:
    """`pidflow analyze`'s progress line: run_analysis's fixed split moved onto the stages' measured costs
    (pidcore.pipeline.costs: extraction's expected share of the time), with the time left. On a terminal one
    line redrawn; otherwise a line at each 10% and at the end."""

    def __init__(self, request: dict, stream=None, clock=None):
        import time

        from pidcore.pipeline import costs

        self.costs, self.clock = costs, clock or time.monotonic
        layers = costs.MODEL_LAYERS.get(request.get("model", "demo"))
        self.share = costs.extract_share(request, layers, overhead_s=0.0)  # the pace starts after the load
        self.estimate_s = costs.estimate(request, layers)["total_s"] if layers is not None else None
        self.stream = stream if stream is not None else sys.stderr
        self.started, self.printed, self.width = self.clock(), -1, 0
        self.first: tuple[float, float] | None = None  # (time, progress) of the first report: the pace counts
        self.lines: list[str] = []                      # from there (loading the model comes before it)

    def line(self, fraction: float, message: str) -> str:
        done = self.costs.reweighted(fraction, RUN_ANALYSIS_EXTRACT_END, self.share)
        stage = "extracting" if fraction <= RUN_ANALYSIS_EXTRACT_END and fraction < 1 else "decomposing"
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        elapsed = now - self.started
        left = self.costs.eta_seconds(done, now - self.first[0], self.estimate_s, since_progress=self.first[1])
        filled = int(round(20 * done))
        text = f"{100 * done:3.0f}% [{'#' * filled}{'.' * (20 - filled)}] {stage}, {elapsed:.0f} s"
        if done >= 1.0:
            return text + " (done)"
        return text + (f", {self.costs.describe_seconds(left)} left" if left is not None else "") + (
            f" · {message}" if message else "")

    def __call__(self, fraction: float, message: str) -> None:
        text = self.line(fraction, message)
        self.lines.append(text)
        done = self.costs.reweighted(fraction, RUN_ANALYSIS_EXTRACT_END, self.share)
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r" + text.ljust(self.width) + ("\n" if done >= 1.0 else ""))
            self.width = len(text)
        elif int(10 * done) > self.printed:
            self.printed = int(10 * done)
            self.stream.write(text + "\n")
        self.stream.flush()


def _cmd_analyze_features(args: argparse.Namespace) -> int:
    """`analyze --features FILE`: the file's pooled features analysed here, or uploaded with --server."""
    given = [flag for flag, value, default in (("--model", args.model, DEFAULTS["model"]),
                                               ("--dataset", args.dataset, DEFAULTS["dataset"]),
                                               ("--split", args.split, DEFAULTS["split"]))
             if value != default] + (["--knockout"] if args.knockout or args.knockout_layers else [])
    if given:
        raise ValueError(f"--features replaces {', '.join(given)}: the file holds the model's pooled states")
    options = {"measure": args.measure, "dims": list(args.dims), "gaussianize": args.gaussianize,
               "bootstrap": args.bootstrap, "seed": args.seed, "correct_only": args.correct_only,
               "tasks": args.tasks, "n_questions": args.n_questions}
    options = {key: value for key, value in options.items() if value is not None}
    if args.server:
        from app.client import run_remote_features

        result = run_remote_features(args.server, args.features, options, token=args.token)
    else:
        from pidcore.features.uploaded import analyze_features

        result = analyze_features(args.features, progress=True, **options)
    return _write_result(result, args.output)


def _write_result(result: dict, output: str) -> int:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(_layer_table(result))
    print(f"result written to {out}")
    return 0


def _layer_table(result: dict) -> str:
    try:
        from pidcore.pipeline.report import format_layer_table
    except ImportError:  # the report module is optional for remote runs: a plain table (bits)
        lines = ["run       layer  redundancy  unique_vision  unique_language  synergy   total"]
        for run_name, run in result["runs"].items():
            for layer in (run or {}).get("layers", []):
                lines.append(f"{run_name:<9} {layer['layer']:>5}  {layer['redundancy']:>10.4f}  "
                             f"{layer['unique_vision']:>13.4f}  {layer['unique_language']:>15.4f}  "
                             f"{layer['synergy']:>7.4f}  {layer['total']:>6.4f}")
        return "\n".join(lines)
    return format_layer_table(result)


#: what `pidflow serve` imports beyond the library (`pip install pidflow` has none of them)
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "a2wsgi", "dash", "celery")


def _missing_server_modules() -> list[str]:
    import importlib.util

    missing = []
    for name in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(name)
    return missing


def _cmd_serve(args: argparse.Namespace) -> int:
    missing = _missing_server_modules()
    if missing:
        print(f"pidflow serve: the dashboard and service need the \"server\" extra ({', '.join(missing)} "
              "not installed): pip install \"pidflow[server]\" (in a checkout: bash scripts/setup.sh)",
              file=sys.stderr)
        return 2
    from app.embedded import parse_gpus, serve

    gpus = parse_gpus(args.gpus)
    if gpus and args.workers < 1:
        raise ValueError("--gpus starts extraction workers only: analyses need at least one CPU worker (--workers)")
    _apply_loading_options(args)  # the workers inherit them
    return serve(host=args.host, port=args.port, workers=args.workers, data_dir=args.data_dir,
                 verbose=args.verbose, gpus=gpus)


def _cmd_worker(args: argparse.Namespace) -> int:
    missing = _missing_server_modules()
    if missing:
        print(f"pidflow worker: needs the \"server\" extra ({', '.join(missing)} not installed): "
              "pip install \"pidflow[server]\"", file=sys.stderr)
        return 2
    from app.embedded import parse_gpus, run_workers

    gpus = parse_gpus(args.gpus)
    workers = args.workers if args.workers is not None else (0 if gpus else 1)
    _apply_loading_options(args)
    return run_workers(workers=workers, gpus=gpus, verbose=args.verbose, log_dir=args.log_dir)


def _with_loading_options(study: argparse.ArgumentParser) -> None:
    """`pidflow study` runs its models here: the loading flags, batch size included (a study's extraction
    reads PIDFLOW_BATCH_SIZE), set PIDFLOW_* first."""
    _add_loading_options(study)
    command = study.get_default("func")

    def run(args: argparse.Namespace) -> int:
        _apply_loading_options(args)
        return command(args)

    study.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pidflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    analyze = sub.add_parser("analyze", help="run a layer-wise PID analysis and print a per-layer table")
    _add_request_options(analyze)
    analyze.add_argument("--features", metavar="FILE",
                         help="analyse your own pooled activations (npz, safetensors or .pt; docs/features-format.md) "
                              "instead of extracting them; pooling and target come from the file")
    analyze.add_argument("--server", help="submit to a pidflow server at this URL instead of running locally")
    analyze.add_argument("--token", help="API token for a hosted server (or PIDFLOW_TOKEN)")
    analyze.add_argument("-o", "--output", default="pidflow-result.json", help="where to write the JSON result")
    _add_loading_options(analyze, where=" (local runs only)")
    analyze.set_defaults(func=_cmd_analyze)

    serve = sub.add_parser("serve", help="run Redis, a worker and the API + dashboard on this machine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="Celery worker processes to start")
    serve.add_argument("--data-dir", help="where the private Redis keeps jobs and results (kept after exit; "
                                          "default PIDFLOW_DATA_DIR, else ~/.local/share/pidflow)")
    serve.add_argument("--verbose", action="store_true", help="workers log to this terminal (default: to files)")
    serve.add_argument("--gpus", metavar="all|0,1,...",
                       help="one extraction worker (queue gpu) per GPU, each seeing only its GPU "
                            "(CUDA_VISIBLE_DEVICES); --workers then counts CPU analysis workers (queue cpu)")
    _add_loading_options(serve, where=" (given to the workers)")
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser("worker", help="run workers on this machine for a pidflow server's Redis (REDIS_URL): "
                                           "more GPUs, more nodes, a Slurm allocation")
    worker.add_argument("--gpus", metavar="all|0,1,...",
                        help="one extraction worker (queue gpu) per GPU, each seeing only its GPU")
    worker.add_argument("--workers", type=int, help="CPU analysis workers (queue cpu; default 0 with --gpus, "
                                                    "else 1 taking both queues)")
    worker.add_argument("--log-dir", help="worker logs (default: <tmp>/pidflow-logs)")
    worker.add_argument("--verbose", action="store_true", help="workers log to this terminal")
    _add_loading_options(worker, where=" (given to the workers)")
    worker.set_defaults(func=_cmd_worker)

    from app.study_cli import add_study_parser

    add_study_parser(sub)
    _with_loading_options(sub.choices["study"])
    from app.fetch_model import add_fetch_parser

    add_fetch_parser(sub)
    describe = sub.add_parser("describe-model", help="what pidflow does with a model, from its config.json (no "
                                                     "weights): family, prompt template, token roles, pooling, "
                                                     "layers, knockout edges; for pooling your own activations")
    describe.add_argument("model", help="demo, a local folder or a Hugging Face id already downloaded")
    describe.add_argument("--json", action="store_true", help="print it as JSON")
    describe.set_defaults(func=_cmd_describe_model)
    return parser


def model_description(model: str) -> dict:
    """What pidflow does with `model` (its config.json only): the family's prompt template and token roles,
    how each layer is pooled, the layers and hidden size, knockout edges. ValueError when unknown here."""
    import json
    from pathlib import Path

    from pidcore.extract.families import describe_config, family_for

    if model == "demo":
        from pidcore.demo import demo_model_path

        path = demo_model_path() / "config.json"
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json") if model.count("/") == 1 else None
        if not isinstance(found, str):
            raise ValueError(f"no config.json for {model!r} here: give demo, a local folder, or a Hugging Face id "
                             f"downloaded first (pidflow fetch-model {model})")
        path = Path(found)
    config = json.loads(path.read_text())
    facts = describe_config(config)
    if facts.get("family") is None:
        raise ValueError(facts.get("unsupported") or f"unsupported model {model!r}")
    family = family_for(config.get("model_type", ""))
    template = family.prompt
    meta = path.parent / "pidflow.json"  # a local folder's own template (pidcore.extract.adapters.load_adapter)
    if meta.is_file():
        template = json.loads(meta.read_text()).get("prompt_template", family.prompt)
    text = config.get("text_config") or config
    layers = facts["num_layers"]
    return {
        "model": model, "family": family.label, "model_type": family.model_type,
        "prompt_template": template, "image_placeholder": family.image_token,
        "decoder_layers": layers, "pooled_layers": None if layers is None else layers + 1,
        "hidden_size": text.get("hidden_size"),
        "variable_image_tokens": family.variable_image_tokens,
        "token_roles": {
            "image": (f"the positions of the image-feature token ({family.image_token!r} as the processor expands "
                      f"it: one position per image feature{', a count that depends on the image size' if family.variable_image_tokens else ''})"),
            "question": ("the tokens of '{question}' in the filled template, aligned onto the processor's ids (not "
                         "the template's fixed words, not the image tokens)"),
            "answer": "the last non-padding position (where the first answer token is predicted)",
        },
        "pooling": {
            "layers": ("layer 0 = the decoder's input (embeddings with the image features merged), layer i = the "
                       "output of decoder layer i-1, the last after the final norm (as output_hidden_states)"),
            "vision": ("mean over the image positions" if family.vision_source == "image_positions" else
                       "the projected cross-attention states (constant over depth)"),
            "language": "mean over the question positions (language_pooling=last: the last question token)",
            "target": ("logprobs: log-softmax over the dataset's answers of the answer position's logits of each "
                       "answer's first token; hidden: the last layer's state at the answer position"),
        },
        "attention": family.attention, "knockout_edges": facts["knockout_edges"],
        "vision_source": family.vision_source, "unmaskable_layers": facts.get("unmaskable_layers", []),
        "features_format": "docs/features-format.md",
    }


def _cmd_describe_model(args: argparse.Namespace) -> int:
    import json

    info = model_description(args.model)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['model']}: {info['family']} ({info['model_type']}), {info['decoder_layers']} decoder layers "
          f"-> {info['pooled_layers']} pooled layers x {info['hidden_size']} features per source")
    print("prompt template (the question goes in {question}; the processor expands the image placeholder "
          f"{info['image_placeholder']!r}):")
    print("  " + info["prompt_template"].replace("\n", "\n  "))
    print("token roles:")
    for role, text in info["token_roles"].items():
        print(f"  {role}: {text}")
    print("pooling:")
    for name, text in info["pooling"].items():
        print(f"  {name}: {text}")
    print(f"knockout edges: {', '.join(info['knockout_edges'])} (attention: {info['attention']})")
    print(f"features files: {info['features_format']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError) as exc:
        print(f"pidflow: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from app.client import AnalysisFailed

        if not isinstance(exc, AnalysisFailed):
            raise
        print(f"pidflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pidflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
