"""Result documents (pidflow.result/1) with known numbers, for figure and browser tests."""

from __future__ import annotations

TERMS = ("redundancy", "unique_vision", "unique_language", "synergy")
TASK_OFFSETS = {"color": 0.0, "shape": 0.3}


def layer_terms(layer: int, knockout: bool = False) -> list[float]:
    """R, U_v, U_l, S (bits) of a layer: simple formulas so every test knows the answer."""
    terms = [0.1 + 0.05 * layer, 0.4 - 0.03 * layer, 0.02 * layer, 0.01 * layer * layer]
    if knockout:
        terms = [terms[0], terms[1] + 0.1, terms[2], terms[3] + 0.05]
    return terms


def make_run(num_layers: int, knockout: bool = False, with_ci: bool = False) -> dict:
    layers = []
    for layer in range(num_layers + 1):
        parts = layer_terms(layer, knockout)
        entry = {"layer": layer, **dict(zip(TERMS, parts, strict=True)), "total": sum(parts)}
        if with_ci:
            entry["ci"] = {t: [v - 0.02, v + 0.03] for t, v in zip(TERMS, parts, strict=True)}
        layers.append(entry)
    return {"layers": layers, "accuracy": 0.75 if knockout else 0.9, "mean_p_correct": 0.6 if knockout else 0.8}


def make_document(request: dict, num_layers: int = 6, n_questions: int = 8, with_ci: bool = False,
                  model_name: str = "demo") -> dict:
    """A full result document; questions alternate correct/incorrect and cycle through request tasks."""
    knockout = request.get("knockout")
    tasks = request.get("tasks") or ["color"]
    questions, pointwise_b, pointwise_k = [], [], []
    answers = ("red", "blue", "green", "yellow")
    for q in range(n_questions):
        task = tasks[q % len(tasks)]
        correct = q % 2 == 0
        answer = answers[q % len(answers)]
        questions.append({
            "qid": f"easy-vqa.test.{q}", "task": task,
            "question": f"What {'color' if task == 'color' else 'shape'} is shown in image {q}?",
            "answer": answer, "image_id": f"easy-vqa.test.{q}",
            "baseline": {"predicted": answer if correct else "gray", "p_correct": 0.9 if correct else 0.2,
                         "correct": correct},
            "knockout": {"predicted": "gray", "p_correct": 0.1, "correct": False} if knockout else None,
        })
        offset = TASK_OFFSETS.get(task, 0.1)
        pointwise_b.append([[v + offset for v in layer_terms(layer)] for layer in range(num_layers + 1)])
        pointwise_k.append([[v + offset for v in layer_terms(layer, True)] for layer in range(num_layers + 1)])
    return {
        "schema": "pidflow.result/1", "request": request,
        "model": {"name": model_name, "revision": "test", "num_layers": num_layers, "hidden_size": 32},
        "code_version": "0.1.0", "n_questions": n_questions,
        "runs": {"baseline": make_run(num_layers, with_ci=with_ci),
                 "knockout": make_run(num_layers, knockout=True, with_ci=with_ci) if knockout else None},
        "effects": {"trapped_unique_vision": 0.1, "compensatory_synergy": 0.05, "information_cost": 0.15,
                    "answer_probability_change_pct": -25.0} if knockout else None,
        "questions": questions,
        "pointwise": {"baseline": pointwise_b, "knockout": pointwise_k if knockout else None},
        "timing": {"extract_s": 0.0, "analyze_s": 0.0},
    }
