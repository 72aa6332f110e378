"""Callback of the features drop zone: upload the file, then start its analysis with the form's estimator
settings; the page's own polling (page_callbacks.control) follows the job from there.

The drop zone's body is large (the file, base64) and its JSON names the token only after the file, so the
browser also sends the API token field's value as a header, the `pidflow_token` cookie (TOKEN_COOKIE, set
by a clientside callback whenever the field changes): a hosted server checks it before reading past its
small body limit (app.server.BodySizeLimit) and answers 401 to a drop without a valid one."""

from __future__ import annotations

import base64
import binascii

from dash import Input, Output, State, html, no_update

from app.ui import data


def decode_upload(contents: str) -> bytes:
    """The bytes of a dcc.Upload `contents` data URL ("data:<type>;base64,<data>"); ValueError otherwise."""
    head, _, payload = (contents or "").partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("the browser did not send the file as a base64 data URL")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the file could not be decoded: {exc}") from exc


def summary_text(info: dict) -> str:
    tasks = ", ".join(f"{task} ({count})" for task, count in info["tasks"].items())
    source = f" from {info['source_model']}" if info.get("source_model") else ""
    sha = info.get("sha256") or info["id"]  # hosted: `id` is the token's handle, `sha256` names the file
    return (f"Features file {sha[:12]}{source}: {info['n_questions']} questions, {info['num_layers']} layers, "
            f"vision {info['vision_dim']} / language {info['language_dim']} / target {info['target_dim']} dimensions; "
            f"tasks {tasks}.")


def capped_dims(info: dict, dims) -> tuple[list[int], str | None]:
    """The form's PCA sizes capped at the file's dimensions (the form's defaults may ask more than a small
    file has, e.g. 4 target components of a 3-dimensional target), and a sentence saying what was capped."""
    sizes = {"vision": info.get("vision_dim"), "language": info.get("language_dim"), "target": info.get("target_dim")}
    capped, said = [], []
    for (name, size), asked in zip(sizes.items(), dims, strict=True):
        if isinstance(size, int) and isinstance(asked, int) and asked > size:
            capped.append(size)
            said.append(f"{name} {asked} -> {size}")
        else:
            capped.append(asked)
    return capped, (f"PCA sizes capped at the file's dimensions: {', '.join(said)}." if said else None)


def features_request(info: dict, measure, dims, gaussianize, bootstrap) -> dict:
    """The upload's own request with the form's estimator settings (PCA sizes capped at the file's
    dimensions); ValueError naming a bad field."""
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError("PCA sizes must be three positive whole numbers")
    if bootstrap is None or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError("bootstrap resamples must be a whole number >= 0")
    return {**info["request"], "measure": measure, "dims": capped_dims(info, dims)[0],
            "gaussianize": gaussianize or "auto", "bootstrap": bootstrap}


TOKEN_COOKIE = "pidflow_token"  # app.server.TOKEN_COOKIE (not imported: the UI does not import the server)
# the token field's value as a same-site session cookie, so that the drop zone's request carries it in its headers
SET_TOKEN_COOKIE = """function (token) {
    var value = token ? encodeURIComponent(token) : "";
    var expiry = token ? "" : "; max-age=0";
    document.cookie = "TOKEN_COOKIE=" + value + "; path=/; SameSite=Strict" + expiry;
    return window.dash_clientside.no_update;
}""".replace("TOKEN_COOKIE", TOKEN_COOKIE)


def register(app, service) -> None:
    app.clientside_callback(SET_TOKEN_COOKIE, Output("token", "title"), Input("token", "value"))

    @app.callback(
        Output("features-summary", "children"), Output("pending-id", "data", allow_duplicate=True),
        Output("poll", "disabled", allow_duplicate=True), Output("submit-status", "children", allow_duplicate=True),
        Output("analysis-id", "data", allow_duplicate=True), Output("tabs", "value", allow_duplicate=True),
        Input("features-upload", "contents"), State("features-upload", "filename"),
        State("measure", "value"), State("dim-vision", "value"), State("dim-language", "value"),
        State("dim-target", "value"), State("gaussianize", "value"), State("bootstrap", "value"),
        State("token", "value"), prevent_initial_call=True,
    )
    def analyse_upload(contents, filename, measure, dim_v, dim_l, dim_t, gaussianize, bootstrap, token):
        keep = no_update
        if not contents:
            return keep, keep, keep, keep, keep, keep
        try:
            info = data.upload_features(service, decode_upload(contents), filename, token)
            note = capped_dims(info, [dim_v, dim_l, dim_t])[1]
            summary = summary_text(info) + (f" {note}" if note else "")
            job = data.submit(service, features_request(info, measure, [dim_v, dim_l, dim_t], gaussianize,
                                                        bootstrap), token)
        except (ValueError, data.DataError) as exc:
            return html.Span(f"Cannot analyse {filename or 'this file'}: {exc}", className="error"), \
                keep, keep, keep, keep, keep
        if job.get("state") == "succeeded":
            return summary, None, True, "Cached result: shown at once.", job["id"], "results"
        if job.get("state") == "failed":
            return summary, None, True, html.Span(f"The analysis failed: {job.get('error')}", className="error"), \
                keep, keep
        return summary, job["id"], False, f"Analysis {job['id']} of the uploaded features is {job['state']}.", \
            keep, keep
