"""Plain-text per-layer table of a result document (bits), with knockout deltas when present."""

from __future__ import annotations

COLUMNS = (("redundancy", "R"), ("unique_vision", "U_v"), ("unique_language", "U_l"), ("synergy", "S"),
           ("total", "total"))


def _row(cells, widths) -> str:
    return "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths, strict=True))


def _within_noise(result: dict, index: int) -> dict:
    """term key of COLUMNS -> True where the knockout delta's paired interval contains 0."""
    per_layer = (result.get("effects") or {}).get("per_layer") or []
    if index >= len(per_layer):
        return {}
    return dict(per_layer[index].get("within_noise") or {})


def format_layer_table(result: dict) -> str:
    """One line per layer: R, U_v, U_l, S, total (bits); knockout values and deltas when present."""
    runs = result.get("runs") or {}
    baseline = (runs.get("baseline") or {}).get("layers", [])
    knockout = (runs.get("knockout") or {}).get("layers") if runs.get("knockout") else None
    model = result.get("model", {})
    lines = [f"model {model.get('name', '?')} · {result.get('n_questions', '?')} questions · bits"]
    estimates = result.get("estimates") or {}
    if estimates.get("estimator"):
        lines.append(f"estimates: {estimates['estimator']}"
                     + ("; 95% intervals in brackets" if estimates.get("intervals") else "; no intervals (bootstrap 0)")
                     + ("; ~ marks a knockout delta within the noise" if knockout else ""))
    has_ci = any(layer.get("ci") for layer in baseline)
    headers = ["layer", *(short for _, short in COLUMNS)] + (["total 95%"] if has_ci else [])
    if knockout:
        headers += [f"ko {short}" for _, short in COLUMNS] + [f"d{short}" for _, short in COLUMNS]
    widths = [max(6, len(h)) for h in headers]
    lines.append(_row(headers, widths))
    for index, layer in enumerate(baseline):
        cells = [layer["layer"], *(f"{layer[key]:.4f}" for key, _ in COLUMNS)]
        if has_ci:
            lo, hi = (layer.get("ci") or {}).get("total", (float("nan"), float("nan")))
            cells.append(f"[{lo:.3f}, {hi:.3f}]")
        if knockout:
            other = knockout[index]
            noise = _within_noise(result, index)
            cells += [f"{other[key]:.4f}" for key, _ in COLUMNS]
            cells += [f"{other[key] - layer[key]:+.4f}{'~' if noise.get(key) else ''}" for key, _ in COLUMNS]
        lines.append(_row(cells, widths))
    for name in ("baseline", "knockout"):
        run = runs.get(name)
        if run and run.get("accuracy") is not None:
            p_correct = run.get("mean_p_correct")
            lines.append(f"{name}: accuracy {run['accuracy']:.3f}"
                         + (f", mean p(correct) {p_correct:.3f}" if p_correct is not None else ""))
    effects = result.get("effects")
    if effects:
        intervals = effects.get("intervals") or {}

        def shown(key):
            value = f"{key} {effects[key]:+.4f}"
            if key in intervals:
                value += f" [{intervals[key][0]:+.4f}, {intervals[key][1]:+.4f}]"
            return value

        summary = ", ".join(shown(key) for key in ("trapped_unique_vision", "compensatory_synergy", "information_cost")
                            if isinstance(effects.get(key), int | float))
        lines.append(f"knockout effects (bits): {summary}")
    return "\n".join(lines)
