"""The request gate: what a request may ask on this server. One path for every kind: the typed request
model validates shape (pidcore.pipeline.analysis.AnalysisRequest, pidcore.study.run.StudyRequest, an upload's
features_request), then the server's checks (model allowed by PIDFLOW_MODELS and, hosted, in the model
cache; the bounds PIDFLOW_MAX_*), then the one feasibility check (app.precheck: dataset present, estimable
at this n, windows inside the model). Every refusal is a ValueError (app.precheck.Refused where it names
its field: HTTP 422). Also a request's expected cost."""

from __future__ import annotations

import importlib
from typing import Any

from app.precheck import KNOCKOUT_EDGES, Refused, check_window
from app.services.catalogue import Catalogue
from app.uploads import is_features_model

DEFAULT_REQUEST = {  # the analysis `pidflow serve` submits at start and the dashboard opens with
    "model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "split": "test", "n_questions": 400,
    "correct_only": False, "language_pooling": "mean", "target": "logprobs", "measure": "broja",
    "dims": [8, 8, 4], "gaussianize": "auto", "estimator": "corrected", "bootstrap": 200, "knockout": None,
    "knockout_target": "baseline", "seed": 0, "reduce_first": False,
}
MAX_STUDY_WINDOWS = 16  # fixed knockout windows per study (each is one more extraction and analysis per part)
__all__ = ["DEFAULT_REQUEST", "KNOCKOUT_EDGES", "MAX_STUDY_WINDOWS", "Validation"]


class Validation(Catalogue):
    """Checks of an analysis request, and its expected cost."""

    def validate(self, request: Any) -> None:
        """An analysis request through the gate: configured model, bounds, model cache, dataset and task,
        feasibility (app.precheck), knockout window, then pidcore's own AnalysisRequest validation. Raises
        ValueError naming the problem."""
        if not isinstance(request, dict):
            raise ValueError("the request body must be a JSON object")
        model = request.get("model", "demo")
        features = is_features_model(model)
        self._admit_model(model, "model", features)
        self.check_bounds(request)
        self._check_cached(model, "model", features)
        if features:
            self._call(self.uploads.validate, request)
        else:
            self._validate_dataset(request)
            self._precheck(request)
        described = self._describe_model(model)
        self._validate_knockout(request.get("knockout"), described.get("num_layers"), described.get("knockout_edges"),
                                described.get("family"))
        try:
            analysis = importlib.import_module("pidcore.pipeline.analysis")
        except ImportError:
            return
        analysis.AnalysisRequest.from_dict(dict(request))

    def validate_study(self, body: Any, token: str | None = None):
        """A study request through the same gate as an analysis: its shape (pidcore.study.run.StudyRequest, every
        problem listed), then per model the allow-list and the model cache, the server's bounds on the fields
        it shares with an analysis (questions, bootstrap, dims, tasks) and on its windows, the dataset, and
        the feasibility of every part (app.precheck.check_study: estimable at this n, windows inside the
        model). A study of features files (`features_dir` or `features`: study_source) names its parts'
        folders, not configured models: the bounds apply, and its source is checked instead of the models and
        the dataset. Returns the StudyRequest; ValueError (Refused naming its field) otherwise."""
        from app.precheck import check_study, field_of
        from pidcore.study.run import StudyRequest

        if not isinstance(body, dict):
            raise Refused(None, "the request body must be a JSON object")
        rest, source = self._split_source(body)
        try:
            study = StudyRequest.from_dict(rest)
        except ValueError as exc:
            first = str(exc).removeprefix("invalid study request: ").split("; ")[0]
            raise Refused(field_of(first), str(exc)) from exc
        if source is None:
            for model in study.models:
                self._admit_model(model, "models", is_features_model(model))
        self.check_bounds({"n_questions": study.n_questions, "bootstrap": study.bootstrap, "dims": list(study.dims),
                           "tasks": list(study.tasks)}, per="study")
        if len(study.knockouts) > MAX_STUDY_WINDOWS:
            raise Refused("knockouts", f"{len(study.knockouts)} fixed knockout windows exceed this server's limit of "
                                       f"{MAX_STUDY_WINDOWS} per study")
        if source is not None:
            self.study_source(body, token, study)
            return study
        for model in study.models:
            self._check_cached(model, "models", False)
        self._validate_dataset({"dataset": study.dataset, "tasks": list(study.tasks), "split": study.split})
        check_study(study, describe=self._describe_model)
        return study

    @staticmethod
    def _split_source(body: dict) -> tuple[dict, dict | None]:
        from worker.studies import SourceError, split_source

        try:
            return split_source(body)
        except SourceError as exc:
            raise Refused(exc.field, str(exc)) from exc

    def study_source(self, body: dict, token: str | None, study=None) -> dict:
        """The fields naming a study's features files, as the workers take them ({} for a study that
        extracts): `features_dir`, a folder on this server holding <model>/<task>/ files (open servers only:
        a hosted server reads no server paths, its tokens upload their files), or `features`, {model: {task:
        [upload ids]}} resolved to the files' sha256s (hosted: only the token's own uploads, by its handles or
        the sha256s of files it uploaded). Refused naming the field when a part has no files."""
        _, source = self._split_source(body)
        if source is None:
            return {}
        if study is None:
            from pidcore.study.run import StudyRequest

            study = StudyRequest.from_dict(self._split_source(body)[0])
        parts = [(model, task) for model in study.models for task in study.tasks]
        if source["kind"] == "dir":
            if self.settings.hosted:
                raise Refused("features_dir", "a hosted server reads no server folders: upload the features files "
                                              "(POST /api/v1/features) and name them in `features` "
                                              "({model: {task: [id, ...]}})")
            from worker.studies import source_files

            for model, task in parts:
                if not source_files(source, model, task):
                    raise Refused("features_dir", f"no features files (.npz, .safetensors, .pt) for part {model} · "
                                                  f"{task} in features_dir (expected <features_dir>/{model}/{task}/)")
            return {"features_dir": source["path"]}
        files = source["files"]
        missing = [f"{model} · {task}" for model, task in parts if not files.get(model, {}).get(task)]
        extra = [f"{model} · {task}" for model, tasks in files.items() for task in tasks if (model, task) not in parts]
        if missing or extra:
            raise Refused("features", "features must name files for every part of the study (models x tasks) and "
                                      "no other: " + "; ".join(
                                          ([f"none for {', '.join(missing)}"] if missing else []) +
                                          ([f"{', '.join(extra)} not in the study"] if extra else [])))
        resolved = {}
        for model, tasks in files.items():
            resolved[model] = {task: [self._upload_sha(features_id, token) for features_id in ids]
                               for task, ids in tasks.items()}
        return {"features": resolved}

    def _upload_sha(self, features_id: str, token: str | None) -> str:
        """The sha256 of an uploaded file a study names; hosted: only a file this token uploaded."""
        from app.uploads import _owner

        try:
            info = self._call(self.uploads.info, features_id)
        except KeyError as exc:
            raise Refused("features", f"{exc.args[0]}: upload it first (POST /api/v1/features)") from exc
        sha = info["sha256"]
        if self.settings.hosted:
            resolved = self._call(self.uploads.store.resolve, features_id)
            owner = _owner(token) if token else None
            if owner is None or (resolved is not None and resolved[1] != owner) or \
                    owner not in self._call(self.uploads.store.owners, sha):
                raise Refused("features", f"unknown features file {features_id!r} for this token: name the ids "
                                          f"your own uploads were given")
        return sha

    def _admit_model(self, model: Any, field: str, features: bool) -> None:
        """Refused unless the model is configured here (PIDFLOW_MODELS) or an uploaded features file."""
        if not isinstance(model, str):
            raise Refused(field, f"{field} must name models as strings, got {model!r}")
        if not features and model not in self.settings.models:
            raise Refused(field, f"unknown model {model!r}; configured models: {', '.join(self.settings.models)}")

    def _check_cached(self, model: str, field: str, features: bool) -> None:
        """Hosted mode: Refused when the model's weights are not in this server's cache (no download in a task)."""
        if self.settings.hosted and not features and model != "demo" and self._describe_model(model)["num_layers"] is None:
            raise Refused(field, f"model {model!r} is not in this server's model cache, and a hosted server does not "
                                 f"download inside a task; an operator fetches it first: pidflow fetch-model {model}")

    @staticmethod
    def _precheck(request: dict) -> None:
        """Refuse (app.precheck.Refused, a ValueError naming its field) what cannot give a result."""
        try:
            from app.precheck import check
        except ImportError:  # the API without pidcore: the worker checks
            return
        check({**DEFAULT_REQUEST, **request})

    def estimate(self, request: dict) -> dict:
        """Expected cost of a request (pidcore.pipeline.costs.estimate: seconds per stage, None when unknown; the
        expected bias of the total in bits)."""
        from pidcore.pipeline import costs

        full = {**DEFAULT_REQUEST, **request}
        return costs.estimate(full, self._describe_model(full.get("model", "demo")).get("num_layers"))

    def limits(self) -> dict:
        """The server's bounds on cost parameters: request field -> (largest value, setting)."""
        cfg = self.settings
        return {"n_questions": (cfg.max_questions, "PIDFLOW_MAX_QUESTIONS"),
                "tasks": (cfg.max_tasks, "PIDFLOW_MAX_TASKS"),
                "bootstrap": (cfg.max_bootstrap, "PIDFLOW_MAX_BOOTSTRAP"),
                "dims": (cfg.max_dim, "PIDFLOW_MAX_DIM")}

    def check_bounds(self, request: dict, per: str = "analysis") -> None:
        """Refused naming the field, its bound and the setting when a cost parameter is out of bounds (the
        fields an analysis and a study share; `per` says which one the message speaks of)."""
        limits = self.limits()

        def integer(name: str, value: Any, minimum: int) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise Refused(name, f"{name} must be an integer >= {minimum}, got {value!r}")
            bound, setting = limits.get(name, (None, None))
            if bound is not None and value > bound:
                raise Refused(name, f"{name}={value} exceeds this server's limit of {bound} ({setting})")
            return value

        integer("n_questions", request.get("n_questions", DEFAULT_REQUEST["n_questions"]), 1)
        integer("bootstrap", request.get("bootstrap", DEFAULT_REQUEST["bootstrap"]), 0)
        dims = request.get("dims", DEFAULT_REQUEST["dims"])
        if (not isinstance(dims, list | tuple) or len(dims) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)):
            raise Refused("dims", "dims must be three positive integers [vision, language, target]")
        bound, setting = limits["dims"]
        if max(dims) > bound:
            raise Refused("dims", f"dims {list(dims)}: each must be at most {bound} on this server ({setting})")
        tasks = request.get("tasks", DEFAULT_REQUEST["tasks"])
        bound, setting = limits["tasks"]
        if isinstance(tasks, list | tuple) and len(tasks) > bound:
            raise Refused("tasks", f"{len(tasks)} tasks exceed this server's limit of {bound} per {per} ({setting})")

    def _validate_dataset(self, request: dict) -> None:
        listing = {entry.get("name"): entry for entry in self.datasets()}
        if not listing:
            return
        dataset = request.get("dataset", "easy-vqa")
        if dataset not in listing:
            raise Refused("dataset", f"unknown dataset {dataset!r}; known: {', '.join(sorted(listing))}")
        tasks = request.get("tasks", ["color"])
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise Refused("tasks", "tasks must be a non-empty list of task names")
        splits = listing[dataset].get("splits")
        split = request.get("split", "test")
        if splits and split not in splits:
            raise Refused("split", f"unknown split {split!r} for {dataset}; known: {', '.join(splits)}")
        known = [t if isinstance(t, str) else t.get("name") for t in listing[dataset].get("tasks", [])]
        unknown = [t for t in tasks if known and t not in known]
        if unknown:
            raise Refused("tasks", f"unknown task(s) {unknown} for {dataset}; known: {', '.join(known)}")

    @staticmethod
    def _validate_knockout(knockout: Any, num_layers: int | None, supported: list | None = None,
                           family: str | None = None) -> None:
        check_window(knockout, num_layers, supported, family)
