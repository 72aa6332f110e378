"""The Questions tab: the question list (search, task, correctness), one question's card and pointwise
decomposition, its attention maps, and the own-question box (the demo model's answer and pointwise terms)."""

from __future__ import annotations

from dash import Input, Output, State, html, no_update

from app.ui import data, figures, wording
from app.ui.page_callbacks import parse_location


def register(app, service) -> None:
    """The Questions tab's callbacks (the list runs when the tab is open, not on every page load)."""
    register_attention(app, service)

    @app.callback(
        Output("question-pick", "options"), Output("question-count", "children"), Output("question-pick", "value"),
        Input("analysis-id", "data"), Input("question-search", "value"), Input("question-task", "value"),
        Input("question-correct", "value"), Input("tabs", "value"), Input("url", "search"),
        State("question-pick", "value"),
    )
    def question_list(analysis_id, search, task, correctness, tab, location, picked):
        if tab != "questions":
            return no_update, no_update, no_update
        if not analysis_id:
            return [], "No analysis open yet.", None
        try:
            document = data.result(service, analysis_id)
        except data.DataError as exc:
            return [], f"Cannot list questions: {exc}", None
        matches = filter_questions(document.get("questions") or [], search, task, correctness)
        options = [{"label": f"{q.get('question')} — gold: {q.get('answer')} ({q.get('task')}, {q.get('qid')})",
                    "value": q.get("qid")} for q in matches[:500]]
        total = len(document.get("questions") or [])
        linked = parse_location(location).get("q")  # a deep link names the question
        shown = {option["value"] for option in options}
        value = linked if linked in shown else (picked if picked in shown else None)
        count = f"{len(matches)} of {total} questions match." if total else "This analysis has no questions."
        return options, count, value if value != picked else no_update

    @app.callback(
        Output("question-view", "children"), Output("question-figure", "figure"),
        Input("question-pick", "value"), State("analysis-id", "data"), prevent_initial_call=True,
    )
    def question_view(qid, analysis_id):
        if not qid or not analysis_id:
            return html.Div("Pick a question to see its image, answers and decomposition.", className="hint"), \
                figures.message_figure("No question picked.")
        try:
            view = data.question(service, analysis_id, qid)
        except data.DataError as exc:
            return html.Div(f"Cannot show this question: {exc}", className="error"), \
                figures.message_figure("No question to show.")
        return question_card(view), figures.question_figure(view)


def register_attention(app, service) -> None:
    """The question explorer's attention maps and the own-question box."""

    @app.callback(
        Output("attention-baseline", "figure"), Output("attention-knockout", "figure"),
        Output("attention-knockout-block", "hidden"), Output("att-layer", "max"), Output("att-head", "options"),
        Output("att-message", "children"),
        Input("question-pick", "value"), Input("att-source", "value"), Input("att-layer", "value"),
        Input("att-head", "value"), State("analysis-id", "data"), prevent_initial_call=True,
    )
    def attention_view(qid, source, layer, head, analysis_id):
        if not qid or not analysis_id:
            empty = figures.message_figure("Pick a question to see where it looks in the image.")
            return empty, empty, True, no_update, no_update, None
        try:
            maps = data.attention(service, analysis_id, qid)
        except data.DataError as exc:
            empty = figures.message_figure("No attention map for this question.")
            return empty, empty, True, no_update, no_update, str(exc)
        base = maps["baseline"]
        top = len(base["layers"]) - 1
        layer = min(int(layer or 0), top)
        head_index = None if head in (None, "mean") else int(head)
        runs = [base] + ([maps["knockout"]] if maps.get("knockout") else [])
        z_max = max(max(map(max, figures.attention_grid(run, layer, source, head_index))) for run in runs) or None
        figs = [figures.attention_figure(run, layer, source, head_index, maps.get("image_url"), title=name, z_max=z_max)
                for run, name in zip(runs, ("Baseline", "Knockout"), strict=False)]
        knockout_fig = figs[1] if len(figs) > 1 else figures.message_figure("No knockout in this analysis.")
        options = [{"label": "mean over heads", "value": "mean"}] + [
            {"label": f"head {h}", "value": str(h)} for h in range(base["heads"])]
        answer = base.get("answer") or {}
        said = f"The model answers {answer['predicted']!r} (p = {answer['p']:.2f}) without a knockout." \
            if answer else None
        return figs[0], knockout_fig, len(figs) == 1, top, options, said

    @app.callback(
        Output("own-answer", "children"), Output("own-attention", "figure"),
        Input("own-ask", "n_clicks"), State("own-image", "contents"), State("own-text", "value"),
        State("att-source", "value"), State("att-layer", "value"), prevent_initial_call=True,
    )
    def own_question(_clicks, contents, text, source, layer):
        import base64

        if not contents:
            return html.Span("Drop an image first.", className="error"), no_update
        try:
            raw = base64.b64decode(contents.split(",", 1)[1])
            answer = data.ask(service, raw, text)
        except (IndexError, ValueError, data.DataError) as exc:
            return html.Span(f"Cannot ask: {exc}", className="error"), no_update
        maps = answer["baseline"]
        layer = min(int(layer or 0), len(maps["layers"]) - 1)
        said = maps.get("answer") or {}
        top = sorted((said.get("probabilities") or {}).items(), key=lambda kv: -kv[1])[:3]
        words = ", ".join(f"{a} {p:.2f}" for a, p in top)
        return [html.B(f"The demo model answers {said.get('predicted')!r}"), f" (most likely: {words})."], \
            figures.attention_figure(maps, layer, source, None, contents, title="Your image")

    @app.callback(
        Output("own-terms", "figure"), Output("own-terms-block", "hidden"), Output("own-terms-note", "children"),
        Input("own-ask", "n_clicks"), State("own-image", "contents"), State("own-text", "value"),
        State("analysis-id", "data"), prevent_initial_call=True,
    )
    def own_terms(_clicks, contents, text, analysis_id):
        """The same question placed among the open analysis's questions (demo-model analyses only)."""
        import base64

        hidden = figures.message_figure("No pointwise terms.")
        if not contents or not analysis_id:
            return hidden, True, None if contents else no_update
        try:
            document = data.result(service, analysis_id)
            if (document.get("request") or {}).get("model") != "demo":
                return hidden, True, "Open an analysis of the demo model to see your question's pointwise terms " \
                    "against its questions."
            terms = data.own_terms(service, analysis_id, base64.b64decode(contents.split(",", 1)[1]), text)
        except (IndexError, ValueError, data.DataError) as exc:
            return hidden, True, html.Span(f"No pointwise terms for your question: {exc}", className="error")
        return figures.own_terms_figure(terms, document), False, own_terms_note(terms, document)


def own_terms_note(terms: dict, document: dict) -> list:
    """What the own-question plot shows, in words: how the question was placed and what that cost."""
    shift = terms.get("refit_shift_bits")
    text = (f"Your question placed among the {terms.get('n_questions', '?')} questions of this analysis: the "
            "analysis's pipeline refitted with it as one more question (bootstrap off). Its pointwise terms "
            "(bits) are drawn over the range of the analysis's own questions.")
    if shift is not None:
        text += f" Refitting with one more question moved their terms by at most {wording.fmt(shift, 2)} bits."
    return [html.B(f"{figures.describe(document)}. "), text]


def filter_questions(questions: list[dict], search: str | None, task: str | None, correctness: str) -> list[dict]:
    """Questions whose text or gold answer holds `search` (case-insensitive), of `task`, and whose baseline
    answer is correct/incorrect as asked ("all" keeps both)."""
    needle = (search or "").strip().lower()
    kept = []
    for question in questions:
        text = f"{question.get('question', '')} {question.get('answer', '')} {question.get('qid', '')}".lower()
        if needle and needle not in text:
            continue
        if task and question.get("task") != task:
            continue
        correct = (question.get("baseline") or {}).get("correct")
        if correctness == "correct" and correct is not True or correctness == "incorrect" and correct is not False:
            continue
        kept.append(question)
    return kept


def question_card(view: dict) -> html.Div:
    def outcome(run: str):
        entry = view.get(run)
        if not entry or entry.get("predicted") is None:
            return None
        verdict = "correct" if entry.get("correct") else "incorrect"
        probability = entry.get("p_correct")
        p_text = f", p(gold) = {probability:.2f}" if isinstance(probability, int | float) else ""
        return html.Li([html.B(f"{run.capitalize()}: "), f"{entry['predicted']} ({verdict}{p_text})"],
                       className=verdict)

    answers = [item for item in (outcome("baseline"), outcome("knockout")) if item is not None]
    return html.Div(className="question-card", children=[
        html.Img(src=view.get("image_url"), alt=f"image {view.get('image_id')}", id="question-image")
        if view.get("image_url") else html.Div("(no image: the features file has none)", className="hint"),
        html.Div([
            html.P(view.get("question") or "(no question text in the features file)", className="question-text"),
            html.P([html.B("Gold answer: "), str(view.get("answer") or "(not given)")]),
            html.Ul(answers, className="answers"),
            html.P(f"{view.get('task')} · {view.get('qid')}", className="hint"),
        ]),
    ])
