"""`pidflow study`: the seed paper's whole experiment (models x tasks x runs x recipes) as one command.

Runs locally (pidcore.study.run.run_study) with a progress bar for the whole and one for the current part, and
writes the report as study.json, study.csv and a self-contained study.html into the output folder.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from pidcore.extract.edges import EDGES


def _edges(text: str) -> list[str]:
    edges = [edge.strip() for edge in text.split(",") if edge.strip()]
    unknown = [edge for edge in edges if edge not in EDGES]
    if not edges or unknown:
        raise argparse.ArgumentTypeError(f"edges must be a comma-separated list of {', '.join(EDGES)}, got {text!r}")
    return edges


def add_study_parser(sub) -> None:
    from pidcore.study.run import DEFAULT_SWEEP, RECIPES, StudyRequest

    defaults = StudyRequest()
    study = sub.add_parser("study", help="run a whole study (models x tasks x knockout runs x recipes) and "
                                         "write its report as JSON, CSV and HTML")
    study.add_argument("--model", dest="models", action="append",
                       help="demo, a Hugging Face id or a local folder (repeatable; default demo)")
    study.add_argument("--dataset", default=defaults.dataset, help="easy-vqa or gqa")
    study.add_argument("--task", dest="tasks", action="append",
                       help="task name (repeatable), or 'all' for every task of the dataset (default color)")
    study.add_argument("--split", default=defaults.split)
    study.add_argument("--n-questions", type=int, default=defaults.n_questions, help="questions per task")
    study.add_argument("--correct-only", action="store_true", help="keep the questions the model answers correctly")
    study.add_argument("--question-ids", metavar="FILE",
                       help="question-id lists (e.g. Zhang et al.'s for GQA): JSON {task: [ids]}, lines 'task,id', a CSV "
                            "with a question_id column (Zhang et al.'s files, task from the name) or a folder of them")
    study.add_argument("--window", nargs=3, action="append", metavar=("EDGES", "FIRST", "LAST"), default=[],
                       help="a fixed knockout window, e.g. --window image->question,image->last 1 3 (repeatable)")
    study.add_argument("--no-seed-cut", dest="seed_cut", action="store_false",
                       help="leave out the seed's image->question cut in every decoder layer")
    study.add_argument("--sweep-edges", type=_edges, default=DEFAULT_SWEEP["edges"],
                       help="edges of the sweep (default image->question)")
    study.add_argument("--sweep-k", type=int, default=DEFAULT_SWEEP["k"],
                       help="layers per sweep window, centred on every decoder layer (default 9)")
    study.add_argument("--no-sweep", dest="sweep", action="store_false", help="no knockout sweep")
    study.add_argument("--recipe", dest="recipes", action="append", choices=list(RECIPES),
                       help="pidflow and/or seed (repeatable; default both, side by side)")
    study.add_argument("--dims", type=int, nargs=3, default=list(defaults.dims), metavar=("DV", "DL", "DY"),
                       help="PCA sizes of the pidflow recipe (the seed recipe keeps 95%% of the variance)")
    study.add_argument("--seed-variance", type=float, default=defaults.seed_variance,
                       help="variance the seed recipe's PCA keeps (default 0.95)")
    study.add_argument("--gaussianize", default=defaults.gaussianize, choices=["auto", "none", "copula", "flow"],
                       help=f"Gaussianization of both recipes (default {defaults.gaussianize}: flows where each "
                            "recipe's plan chooses them; the demo's all-task study takes ~110 CPU-s with copula, "
                            "~9x that with auto's flows: docs/study.md, Speed)")
    study.add_argument("--no-gaussianize", dest="gaussianize", action="store_const", const="none",
                       help="same as --gaussianize none")
    study.add_argument("--bootstrap", type=int, default=defaults.bootstrap, help="bootstrap rounds (intervals)")
    study.add_argument("--seed", type=int, default=defaults.seed)
    study.add_argument("--threads", type=int, default=1,
                       help="torch threads for extraction (default 1: fastest for the small demo model on a "
                            "shared CPU; raise it for big models on a CPU)")
    study.add_argument("-o", "--output-dir", default="pidflow-study", help="folder for study.json/.csv/.html")
    study.add_argument("--features-dir", metavar="DIR",
                       help="bring your own activations: each part's runs from features files in DIR/<model>/<task>/ "
                            "(docs/features-format.md; one file per knocked-out run, each with the baseline's arrays "
                            "and its knockout.* arrays); no model runs. Models and tasks default to DIR's folders")
    study.add_argument("--no-resume", dest="resume", action="store_false",
                       help="run every part again (default: parts a run of the same study into the same folder "
                            "finished, kept in <output dir>/.parts, are reused)")
    study.set_defaults(func=cmd_study)


def study_request(args: argparse.Namespace) -> dict:
    from pidcore.data import list_datasets

    folder = Path(args.features_dir).expanduser() if getattr(args, "features_dir", None) else None
    if folder is not None and not folder.is_dir():
        raise ValueError(f"--features-dir {folder}: no such folder")
    models = args.models or (sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder else ["demo"])
    if folder is not None and not models:
        raise ValueError(f"--features-dir {folder}: no model folders in it (expected DIR/<model>/<task>/<files>)")
    tasks = args.tasks or (sorted(p.name for p in (folder / models[0]).iterdir() if p.is_dir()) if folder
                           else ["color"])
    if "all" in tasks:
        datasets = list_datasets()
        if args.dataset not in datasets:
            raise ValueError(f"unknown dataset {args.dataset!r}; valid datasets: {', '.join(datasets)}")
        tasks = datasets[args.dataset].task_names
    windows = []
    for edges, first, last in args.window:
        try:
            windows.append({"edges": _edges(edges), "layers": [int(first), int(last)]})
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise ValueError(f"--window {edges} {first} {last}: {error}") from None
    return {"models": models, "dataset": args.dataset, "tasks": tasks, "split": args.split,
            "n_questions": args.n_questions, "correct_only": args.correct_only, "knockouts": windows,
            "seed_cut": args.seed_cut, "sweep": {"edges": args.sweep_edges, "k": args.sweep_k} if args.sweep else None,
            "recipes": args.recipes or ["pidflow", "seed"], "dims": list(args.dims),
            "seed_variance": args.seed_variance, "gaussianize": args.gaussianize, "bootstrap": args.bootstrap,
            "seed": args.seed, "question_ids": _question_ids(args.question_ids)}


def _question_ids(path):
    if not path:
        return None
    from pidcore.study.run import read_question_ids

    return read_question_ids(path)


class PartStore:
    """Finished parts of a study in `<output dir>/.parts/<key>.json`, the key naming the request's content,
    the model's revision, pidflow's version, the model and the task: a re-run of the same study reuses them
    (a changed request, model checkpoint or pidflow version does not match)."""

    def __init__(self, folder: Path, request, features_dir=None):
        self.folder, self.request, self.reused = Path(folder), request, []
        self.features_dir = Path(features_dir).expanduser() if features_dir else None

    def _revision(self, model: str, task: str) -> str:
        """The model's revision, or with features files the names, sizes and times of the part's files."""
        import hashlib

        if self.features_dir is None:
            from worker.revision import model_revision

            return model_revision(model)
        where = self.features_dir / model / task
        listing = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(where.glob("*"))
                   if p.is_file()] if where.is_dir() else []
        return "files-" + hashlib.sha256("\n".join(listing).encode()).hexdigest()

    def _path(self, model: str, task: str) -> Path:
        import hashlib

        from pidcore import __version__

        key = "\n".join([self.request.content_hash(), self._revision(model, task), __version__, model, task])
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def load(self, model: str, task: str) -> dict | None:
        import json

        path = self._path(model, task)
        try:
            done = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        self.reused.append((model, task))
        return done

    def save(self, model: str, task: str, done: dict) -> None:
        import json
        import os

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(model, task)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(done))
        os.replace(temporary, path)


def plotly_js() -> str | None:
    """The dashboard's vendored cartesian bundle when installed (smaller page), else None (plotly.py's)."""
    try:
        from app.ui.plotly_bundle import installed_bundle
    except ImportError:
        return None
    path = installed_bundle()
    return path.read_text(encoding="utf-8") if path else None


def write_report(report: dict, folder: str | Path) -> dict[str, Path]:
    from pidcore.study.export import to_csv, to_html, to_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "study.json", "csv": folder / "study.csv", "html": folder / "study.html"}
    paths["json"].write_text(to_json(report))
    paths["csv"].write_text(to_csv(report))
    paths["html"].write_text(to_html(report, plotly_js=plotly_js()), encoding="utf-8")
    return paths


def findings_text(report: dict) -> str:
    """What the study found: the seed's claims (a)-(e) with verdicts and intervals (pidcore.study.verdicts)."""
    from pidcore.study.verdicts import summary_lines

    found = report.get("findings")
    if not found:
        return ""
    return "\n".join(["What the study found (the seed paper's claims; rules in docs/study.md):",
                      *summary_lines(found), ""])


def headline_text(report: dict) -> str:
    """The headline table as plain text: shares (%) at the last layer, U_v peak, largest S share."""
    lines = [f"{'model':<14} {'task':<14} {'recipe':<8} {'n':>5} {'R':>6} {'U_v':>6} {'U_l':>6} {'S':>6} "
             f"{'bits':>6} {'U_v peak':>8} {'max S':>6}"]
    for row in report["headline"]:
        shares = [f"{100 * row['shares'][t]:5.1f}%" if row["shares"][t] is not None else "     –"
                  for t in ("redundancy", "unique_vision", "unique_language", "synergy")]
        top = row["max_synergy_share"]
        lines.append(f"{row['model'][-14:]:<14} {row['task'][:14]:<14} {row['recipe']:<8} {row['n_questions']:>5} "
                     f"{' '.join(shares)} {row['total_bits']:6.3f} {row['unique_vision_peak_layer']:>8} "
                     f"{'–' if top is None else f'{100 * top:5.1f}%':>6}")
    for part in report["parts"]:
        listed = "" if part.get("n_listed") is None else f"{part['n_listed']} listed ids found, "
        lines.append(f"{part['model']} · {part['task']}: {listed}{part['n_asked']} asked, "
                     f"{part.get('n_correct', '?')} answered correctly, {part['n_kept']} kept")
    swept = {part["model"]: part["sweep"] for part in report["parts"] if part.get("sweep")}
    for model, used in swept.items():
        lines.append(f"sweep on {model}: windows of {used['k_used']} decoder layers ({used['reason']})")
    for row in report["correlations"]:
        rs = ", ".join(f"{t} {row[t]:.3f}" if row[t] is not None else f"{t} –"
                       for t in ("redundancy", "unique_vision", "unique_language", "synergy"))
        lines.append(f"r({' vs '.join(row['models'])}, {row['task']}, {row['recipe']}): {rs}")
    return "\n".join(lines)


def cmd_study(args: argparse.Namespace) -> int:
    import torch

    from app.precheck import check_study
    from pidcore.study.run import StudyInterrupted, StudyPartsFailed, StudyRequest, run_study

    request = StudyRequest.from_dict(study_request(args))
    if not args.features_dir:
        check_study(request)  # the feasibility check the server's gate runs: refused before any model loads
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    store = PartStore(Path(args.output_dir) / ".parts", request, args.features_dir) if args.resume else None
    try:
        with warnings.catch_warnings(record=True) as caught:  # kept in the report's layer entries
            warnings.simplefilter("always")
            report = run_study(request, progress=True, parts=store, keep_going=True,
                               features_dir=args.features_dir or None)
    except StudyInterrupted as stopped:  # Ctrl-C: what finished is written, the rest said
        if stopped.report is None:
            print(f"interrupted: none of the {stopped.total} parts had finished; nothing written", file=sys.stderr)
        else:
            paths = write_report(stopped.report, args.output_dir)
            missing = ", ".join(" · ".join(pair) for pair in stopped.report["interrupted"]["missing_parts"])
            print(findings_text(stopped.report))
            print(headline_text(stopped.report))
            print(f"interrupted: {stopped.finished} of {stopped.total} parts finished; their report is in "
                  f"{', '.join(str(p) for p in paths.values())} (missing: {missing})", file=sys.stderr)
        return 130
    except StudyPartsFailed as failed:  # the other parts finished: their report, and which failed and why
        for failure in failed.failures:
            print(f"part {failure['model']} · {failure['task']} failed: {failure['error']}", file=sys.stderr)
        if failed.report is not None:
            paths = write_report(failed.report, args.output_dir)
            print(findings_text(failed.report))
            print(headline_text(failed.report))
            print(f"{failed.total - len(failed.failures)} of {failed.total} parts finished; their report is in "
                  f"{', '.join(str(p) for p in paths.values())}", file=sys.stderr)
        if store is not None:
            print(f"run the same command again to run only the failed parts (finished parts are kept in "
                  f"{store.folder})", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(previous)
    if store is not None and store.reused:
        print(f"reused {len(store.reused)} finished part(s) from {store.folder}: "
              f"{', '.join(' · '.join(pair) for pair in store.reused)}")
    paths = write_report(report, args.output_dir)
    print(findings_text(report))
    print(headline_text(report))
    if caught:
        distinct = len({str(warning.message) for warning in caught})
        print(f"{distinct} distinct analysis warning(s) (e.g. small-sample bias); see the layers' 'warnings' "
              f"in {paths['json']}")
    timing = report["timing"]
    print(f"study: {timing['wall_s']:.1f} s (extraction {timing['extract_s']:.1f} s, analyses "
          f"{timing['analyze_s']:.1f} s); report written to {', '.join(str(p) for p in paths.values())}")
    return 0
