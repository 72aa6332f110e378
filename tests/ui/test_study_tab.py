"""The dashboard's Studies tab helpers: what a pasted id or link names, the view of a study (links only to
what exists), the server's list."""

from app.ui import study_callbacks as tab

STUDY = "a" * 32


def test_a_study_is_named_by_id_page_link_api_url_or_deep_link():
    assert tab.study_ref(f"  {STUDY} ") == STUDY
    assert tab.study_ref(f"http://host:8000/study/{STUDY}") == STUDY
    assert tab.study_ref(f"http://host/api/v1/studies/{STUDY}/report?format=csv") == STUDY
    assert tab.study_ref(f"/?tab=studies&study={STUDY}") == STUDY
    assert tab.study_ref(None) == ""


def _hrefs(component) -> list[str]:
    found = [component.href] if getattr(component, "href", None) else []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        found += _hrefs(child)
    return found


def test_the_view_links_the_page_and_the_exports_once_finished():
    parts = [{"model": "demo", "task": "shape", "progress": 0.5, "message": "extract"}]
    running = tab.study_view({"id": STUDY, "state": "running", "progress": 0.25, "parts": parts})
    assert _hrefs(running) == [f"/study/{STUDY}"]
    done = tab.study_view({"id": STUDY, "state": "succeeded", "progress": 1.0,
                           "parts": [{**parts[0], "progress": 1.0}]})
    assert _hrefs(done) == [f"/study/{STUDY}", *(f"/api/v1/studies/{STUDY}/report?format={fmt}"
                                                 for fmt in ("json", "csv", "html"))]


def test_the_list_links_every_study_page():
    rows = [{"id": STUDY, "state": "queued", "progress": 0.0, "models": ["demo"], "tasks": ["shape", "color"],
             "created_at": 0.0}]
    assert _hrefs(tab.study_rows(rows)) == [f"/study/{STUDY}"]
    assert tab.study_rows([]) == "No studies on this server yet."
