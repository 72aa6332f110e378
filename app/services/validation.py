"""What a request may ask on this server: its bounds (PIDFLOW_MAX_*), model, dataset, tasks and knockout
window, the feasibility precheck (app.precheck), pidcore's own request check, and its expected cost."""

from __future__ import annotations

import importlib
from typing import Any

from app.services.catalogue import Catalogue
from app.uploads import is_features_model

DEFAULT_REQUEST = {  # the analysis `pidflow serve` submits at start and the dashboard opens with
    "model": "demo", "dataset": "easy-vqa", "tasks": ["color"], "split": "test", "n_questions": 400,
    "correct_only": False, "language_pooling": "mean", "target": "logprobs", "measure": "broja",
    "dims": [8, 8, 4], "gaussianize": "auto", "estimator": "corrected", "bootstrap": 200, "knockout": None,
    "knockout_target": "baseline", "seed": 0,
}
KNOCKOUT_EDGES = ("image->question", "image->last", "question->last", "last->last", "question->image")


class Validation(Catalogue):
    """Checks of an analysis request, and its expected cost."""

    def validate(self, request: Any) -> None:
        """Service-level checks (configured model, bounds, known dataset/task, layer window), then
        pidcore's own AnalysisRequest validation. Raises ValueError naming the problem."""
        if not isinstance(request, dict):
            raise ValueError("the request body must be a JSON object")
        model = request.get("model", "demo")
        features = is_features_model(model)
        if not features and model not in self.settings.models:
            raise ValueError(f"unknown model {model!r}; configured models: {', '.join(self.settings.models)}")
        self.check_bounds(request)
        if self.settings.hosted and not features and model != "demo" and self._describe_model(model)["num_layers"] is None:
            raise ValueError(f"model {model!r} is not in this server's model cache, and a hosted server does not "
                             f"download inside a task; an operator fetches it first: pidflow fetch-model {model}")
        if features:
            self._call(self.uploads.validate, request)
        else:
            self._validate_dataset(request)
            self._precheck(request)
        described = self._describe_model(model)
        self._validate_knockout(request.get("knockout"), described.get("num_layers"), described.get("knockout_edges"),
                                described.get("family"))
        try:
            analysis = importlib.import_module("pidcore.analysis")
        except ImportError:
            return
        analysis.AnalysisRequest.from_dict(dict(request))

    @staticmethod
    def _precheck(request: dict) -> None:
        """Refuse (app.precheck.Refused, a ValueError naming its field) what cannot give a result."""
        try:
            from app.precheck import check
        except ImportError:  # the API without pidcore: the worker checks
            return
        check({**DEFAULT_REQUEST, **request})

    def estimate(self, request: dict) -> dict:
        """Expected cost of a request (pidcore.costs.estimate: seconds per stage, None when unknown; the
        expected bias of the total in bits)."""
        from pidcore import costs

        full = {**DEFAULT_REQUEST, **request}
        return costs.estimate(full, self._describe_model(full.get("model", "demo")).get("num_layers"))

    def limits(self) -> dict:
        """The server's bounds on cost parameters: request field -> (largest value, setting)."""
        cfg = self.settings
        return {"n_questions": (cfg.max_questions, "PIDFLOW_MAX_QUESTIONS"),
                "tasks": (cfg.max_tasks, "PIDFLOW_MAX_TASKS"),
                "bootstrap": (cfg.max_bootstrap, "PIDFLOW_MAX_BOOTSTRAP"),
                "dims": (cfg.max_dim, "PIDFLOW_MAX_DIM")}

    def check_bounds(self, request: dict) -> None:
        """ValueError naming the field, its bound and the setting when a cost parameter is out of bounds."""
        limits = self.limits()

        def integer(name: str, value: Any, minimum: int) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            bound, setting = limits.get(name, (None, None))
            if bound is not None and value > bound:
                raise ValueError(f"{name}={value} exceeds this server's limit of {bound} ({setting})")
            return value

        integer("n_questions", request.get("n_questions", DEFAULT_REQUEST["n_questions"]), 1)
        integer("bootstrap", request.get("bootstrap", DEFAULT_REQUEST["bootstrap"]), 0)
        dims = request.get("dims", DEFAULT_REQUEST["dims"])
        if (not isinstance(dims, list | tuple) or len(dims) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)):
            raise ValueError("dims must be three positive integers [vision, language, target]")
        bound, setting = limits["dims"]
        if max(dims) > bound:
            raise ValueError(f"dims {list(dims)}: each must be at most {bound} on this server ({setting})")
        tasks = request.get("tasks", DEFAULT_REQUEST["tasks"])
        bound, setting = limits["tasks"]
        if isinstance(tasks, list | tuple) and len(tasks) > bound:
            raise ValueError(f"{len(tasks)} tasks exceed this server's limit of {bound} per analysis ({setting})")

    def _validate_dataset(self, request: dict) -> None:
        listing = {entry.get("name"): entry for entry in self.datasets()}
        if not listing:
            return
        dataset = request.get("dataset", "easy-vqa")
        if dataset not in listing:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(listing))}")
        tasks = request.get("tasks", ["color"])
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise ValueError("tasks must be a non-empty list of task names")
        splits = listing[dataset].get("splits")
        split = request.get("split", "test")
        if splits and split not in splits:
            raise ValueError(f"unknown split {split!r} for {dataset}; known: {', '.join(splits)}")
        known = [t if isinstance(t, str) else t.get("name") for t in listing[dataset].get("tasks", [])]
        unknown = [t for t in tasks if known and t not in known]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown} for {dataset}; known: {', '.join(known)}")

    @staticmethod
    def _validate_knockout(knockout: Any, num_layers: int | None, supported: list | None = None,
                           family: str | None = None) -> None:
        if knockout is None:
            return
        if not isinstance(knockout, dict):
            raise ValueError('knockout must be null or {"edges": [...], "layers": [first, last]}')
        edges = knockout.get("edges")
        if not isinstance(edges, list) or not edges or any(e not in KNOCKOUT_EDGES for e in edges):
            raise ValueError(f"knockout.edges must be a non-empty list from {', '.join(KNOCKOUT_EDGES)}")
        if supported and any(e not in supported for e in edges):
            raise ValueError(f"{family or 'this model'} supports knockout edges {', '.join(supported)}; "
                             f"not {', '.join(e for e in edges if e not in supported)}")
        layers = knockout.get("layers")
        if (not isinstance(layers, list | tuple) or len(layers) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)):
            raise ValueError("knockout.layers must be [first, last] decoder-layer indices")
        first, last = layers
        if first < 0 or last < first:
            raise ValueError(f"knockout.layers [{first}, {last}] is not a window (0 <= first <= last)")
        if num_layers is not None and last >= num_layers:
            raise ValueError(
                f"knockout.layers [{first}, {last}] is outside the model: decoder layers are 0..{num_layers - 1}"
            )
