"""The features drop zone knows the server's upload limit: the browser refuses a larger file before reading
it (dcc.Upload max_size) and static/upload-limit.js shows the message the layout wrote, with the limit."""

from types import SimpleNamespace

from dash import dcc

from app.ui import data
from app.ui.layout import build_layout, features_upload_panel, size_text, too_large_template


def _find(component, predicate):
    if predicate(component):
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find(child, predicate)
            if found is not None:
                return found
    return None


def test_sizes_read_in_binary_units():
    assert [size_text(n) for n in (512, 1_000_000, 256 * 1024**2, 3 * 1024**3 // 2)] == \
        ["512 bytes", "977 KiB", "256 MiB", "1.5 GiB"]


def test_the_drop_zone_carries_the_limit_and_its_message():
    panel = features_upload_panel(1_000_000)
    upload = _find(panel, lambda c: isinstance(c, dcc.Upload))
    assert upload.max_size == 1_000_000
    guard = _find(panel, lambda c: getattr(c, "data-max-bytes", None) is not None)
    assert getattr(guard, "data-max-bytes") == "1000000" and getattr(guard, "data-message") == "features-summary"
    message = getattr(guard, "data-too-large")
    assert message == too_large_template(1_000_000)
    assert "{name}" in message and "{size}" in message and "(977 KiB, PIDFLOW_MAX_UPLOAD_BYTES)" in message
    assert "(up to 977 KiB)" in str(upload.children)
    unlimited = _find(features_upload_panel(None), lambda c: isinstance(c, dcc.Upload))
    assert unlimited.max_size == -1


def test_the_page_gets_the_services_limit():
    service = SimpleNamespace(settings=SimpleNamespace(max_upload_bytes=256 * 1024**2, hosted=False))
    assert data.upload_limit(service) == 256 * 1024**2 and data.upload_limit(object()) is None
    from app.service import DEFAULT_REQUEST

    page = build_layout([], [], False, dict(DEFAULT_REQUEST), upload_limit=data.upload_limit(service))
    assert _find(page, lambda c: isinstance(c, dcc.Upload) and c.id == "features-upload").max_size == 256 * 1024**2
