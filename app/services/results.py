"""Reading a finished analysis: the result document (kept in memory, re-checked against its job), CSV, one
question's view, attention maps, and the demo model's answer to an uploaded question."""

from __future__ import annotations

import csv
import io
import json
import time

from app.result_cache import CachedResult
from app.services.analyses import Analyses
from app.services.base import JobNotReady

PID_FIELDS = ("redundancy", "unique_vision", "unique_language", "synergy")


class Results(Analyses):
    """The result of an analysis and views of it (bits)."""

    def result(self, analysis_id: str) -> dict:
        """The result document; KeyError if unknown, JobNotReady while it runs."""
        return json.loads(self.result_json(analysis_id))

    def fresh_result(self, analysis_id: str) -> CachedResult | None:
        """The in-memory finished result, without I/O (the fast path for repeated GETs), or None when the
        caller must call `cached_result` (which re-checks the job in Redis). Its job was seen alive within
        `recheck_s`; once that is older, one caller is sent to re-check it while the others keep getting the
        copy for up to another `recheck_s`. So a delete made through another API process shows within at
        most 2 x `recheck_s`, and concurrent GETs do not all go to Redis at once."""
        cached = self._documents.get(analysis_id)
        if cached is None:
            return None
        now = time.monotonic()
        age = now - cached.seen
        if age < self.recheck_s:
            return cached
        with self._claim_lock:
            if now - cached.claimed >= self.recheck_s:  # nobody is re-checking it (or that attempt is stale)
                cached.claimed = now
                return None
        return cached if age < 2 * self.recheck_s else None

    def cached_result(self, analysis_id: str) -> CachedResult:
        """The finished result, ready to serve (JSON bytes, gzip copy, ETags); KeyError if unknown,
        JobNotReady while it runs. Its job is checked in Redis on every call."""
        try:
            status = self.status(analysis_id)  # KeyError once deleted, so the cache never outlives a job
        except KeyError:
            self._documents.drop(analysis_id)
            raise
        cached = self._documents.get(analysis_id)
        if cached is not None:
            cached.seen = time.monotonic()
            return cached
        if status.get("state") != "succeeded":
            raise JobNotReady(status)
        try:
            document = self._call(self.jobs.result, self._call(self.registry.job_of, analysis_id))
        except Exception as exc:
            if type(exc).__name__ == "JobNotReady":
                raise JobNotReady(status) from exc
            raise
        cached = CachedResult.from_document(document)
        self._documents.put(analysis_id, cached)
        return cached

    def result_json(self, analysis_id: str) -> bytes:
        """The result document as compact JSON bytes."""
        return self.cached_result(analysis_id).body

    def _document(self, analysis_id: str) -> dict:
        return self.cached_result(analysis_id).document

    def result_csv(self, analysis_id: str) -> str:
        """One row per run x layer: analysis id, model, tasks, run, the knockout's edges and window (decoder
        layers, on knockout and delta rows), layer, the four parts and the total (bits), CI bounds when present;
        with a knockout, also the "delta" rows (knockout - baseline per layer, with their paired intervals)."""
        document = self._document(analysis_id)
        request = document.get("request") or {}
        model = (document.get("model") or {}).get("name") or request.get("model", "")
        labels = [analysis_id, model, "+".join(request.get("tasks") or [])]
        knockout = request.get("knockout") or {}
        cut = ["+".join(knockout.get("edges") or []), "-".join(str(x) for x in knockout.get("layers") or [])]
        columns = ["analysis_id", "model", "tasks", "run", "knockout_edges", "knockout_window", "layer",
                   *PID_FIELDS, "total"]
        ci_fields = [*PID_FIELDS, "total"]
        deltas = [entry for entry in ((document.get("effects") or {}).get("per_layer") or [])
                  if isinstance(entry, dict) and "layer" in entry]
        has_ci = any(
            layer.get("ci") for run in document["runs"].values() if run for layer in run.get("layers", [])
        ) or any(entry.get("ci") for entry in deltas)
        if has_ci:
            columns += [f"{name}_{end}" for name in ci_fields for end in ("lo", "hi")]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        runs = [(name, run["layers"]) for name, run in document["runs"].items() if run]
        if deltas:
            runs.append(("delta", deltas))
        for run_name, layers in runs:
            for layer in layers:
                row = [*labels, run_name, *(cut if run_name != "baseline" else ["", ""]), layer["layer"],
                       *(layer.get(name, "") for name in ci_fields)]
                if has_ci:
                    ci = layer.get("ci") or {}
                    for name in ci_fields:
                        row += list(ci.get(name) or ["", ""])
                writer.writerow(row)
        return out.getvalue()

    def question(self, analysis_id: str, qid: str) -> dict:
        """One question: texts, answers, image URL and its per-layer pointwise decomposition (bits)."""
        document = self._document(analysis_id)
        questions = document.get("questions") or []
        index = next((i for i, q in enumerate(questions) if q.get("qid") == qid), None)
        if index is None:
            raise KeyError(f"question {qid!r} is not part of analysis {analysis_id}")
        entry = questions[index]
        view = {key: entry.get(key) for key in ("qid", "task", "question", "answer", "image_id")}
        view["image_url"] = f"/api/v1/images/{entry.get('image_id')}" if entry.get("image_id") else None
        pointwise = document.get("pointwise") or {}
        for run in ("baseline", "knockout"):
            outcome = entry.get(run)
            terms = pointwise.get(run)
            if outcome is None and terms is None:
                view[run] = None
                continue
            layers = []
            if terms is not None:
                for layer, values in enumerate(terms[index]):
                    parts = dict(zip(PID_FIELDS, values, strict=True))
                    layers.append({"layer": layer, **parts, "total": sum(values)})
            view[run] = {**(outcome or {}), "layers": layers}
        return view

    def attention(self, analysis_id: str, qid: str) -> dict:
        """Attention of one question to its image patches per decoder layer, baseline and knockout (app.attention;
        demo model only)."""
        from app.attention import question_attention

        return question_attention(self._document(analysis_id), analysis_id, qid)

    def ask(self, image_bytes: bytes, question: str) -> dict:
        """The demo model's answer to an uploaded image and question, with its attention maps."""
        from app.attention import own_question

        return own_question(image_bytes, question)

    def own_terms(self, analysis_id: str, image_bytes: bytes, question: str) -> dict:
        """The per-layer pointwise terms (bits) of an uploaded image and question placed among the questions
        of a finished demo-model analysis (app/own_terms.py); KeyError when the analysis kept no features."""
        from app.own_terms import own_terms

        document = self._document(analysis_id)
        reader = getattr(self.jobs, "probe_features", None)
        kept = self._call(reader, self._call(self.registry.job_of, analysis_id)) if reader else None
        if kept is None:
            raise KeyError(f"analysis {analysis_id} kept no features to place a new question among (only "
                           f"demo-model analyses finished by this version do, for as long as their result)")
        return own_terms(document, kept, image_bytes, question)
