"""Plain-text per-layer table of a result document (bits), with knockout deltas when present."""

from __future__ import annotations

COLUMNS = (("redundancy", "R"), ("unique_vision", "U_v"), ("unique_language", "U_l"), ("synergy", "S"),
           ("total", "total"))


def _row(cells, widths) -> str:
    return "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths, strict=True))


def format_layer_table(result: dict) -> str:
    """One line per layer: R, U_v, U_l, S, total (bits); knockout values and deltas when present."""
    runs = result.get("runs") or {}
    baseline = (runs.get("baseline") or {}).get("layers", [])
    knockout = (runs.get("knockout") or {}).get("layers") if runs.get("knockout") else None
    model = result.get("model", {})
    lines = [f"model {model.get('name', '?')} · {result.get('n_questions', '?')} questions · bits"]
    headers = ["layer", *(short for _, short in COLUMNS)]
    if knockout:
        headers += [f"ko {short}" for _, short in COLUMNS] + [f"d{short}" for _, short in COLUMNS]
    widths = [max(6, len(h)) for h in headers]
    lines.append(_row(headers, widths))
    for index, layer in enumerate(baseline):
        cells = [layer["layer"], *(f"{layer[key]:.4f}" for key, _ in COLUMNS)]
        if knockout:
            other = knockout[index]
            cells += [f"{other[key]:.4f}" for key, _ in COLUMNS]
            cells += [f"{other[key] - layer[key]:+.4f}" for key, _ in COLUMNS]
        lines.append(_row(cells, widths))
    for name in ("baseline", "knockout"):
        run = runs.get(name)
        if run and run.get("accuracy") is not None:
            p_correct = run.get("mean_p_correct")
            lines.append(f"{name}: accuracy {run['accuracy']:.3f}"
                         + (f", mean p(correct) {p_correct:.3f}" if p_correct is not None else ""))
    effects = result.get("effects")
    if effects:
        summary = ", ".join(f"{key} {effects[key]:+.4f}" for key in
                            ("trapped_unique_vision", "compensatory_synergy", "information_cost")
                            if isinstance(effects.get(key), int | float))
        lines.append(f"knockout effects (bits): {summary}")
    return "\n".join(lines)
