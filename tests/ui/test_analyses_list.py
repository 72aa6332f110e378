"""The Analyses tab's data access over the real AnalysisService (real Redis, the job layer's stand-in):
each hosted token lists its own analyses with what they asked for, searched and paged; only the owner may
delete; open mode lists everyone's. Plus the tab's table and pager helpers."""

from __future__ import annotations

import pytest
import redis

from app.service import DEFAULT_REQUEST, AnalysisService
from app.settings import Settings
from app.ui import analyses_callbacks, data, layout
from tests.service.fakejobs import FakeJobs
from tests.service.test_api_routes import _fake_model_size, redis_url  # noqa: F401 - fixtures

BASE = {**DEFAULT_REQUEST, "n_questions": 50, "bootstrap": 0}  # as the job layer keeps it: in full
KNOCKOUT = {"edges": ["image->question"], "layers": [0, 2]}


def make_service(url: str, **settings) -> AnalysisService:
    client = redis.Redis.from_url(url)
    return AnalysisService(Settings(redis_url=url, rate_limit_per_minute=1000, **settings), jobs=FakeJobs(client),
                           redis_client=client)


@pytest.fixture
def hosted(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    service = make_service(redis_url, api_tokens=("alpha", "beta"))
    ids = [data.submit(service, {**BASE, "seed": seed, "tasks": ["shape" if seed == 2 else "color"],
                                 "knockout": KNOCKOUT if seed == 3 else None}, "alpha")["id"] for seed in range(5)]
    beta = data.submit(service, {**BASE, "seed": 0}, "beta")["id"]
    return service, ids, beta


def test_a_hosted_token_lists_searches_and_pages_its_own_analyses(hosted):
    service, ids, beta = hosted
    page = data.analyses_page(service, "alpha", 0, 3)
    assert page["total"] == 5 and [item["id"] for item in page["items"]] == ids[::-1][:3]  # newest first
    item = page["items"][1]
    assert (item["model"], item["dataset"], item["tasks"], item["n_questions"]) == ("demo", "easy-vqa", ["color"], 50)
    assert page["items"][0]["knockout"] is None and item["knockout"] == KNOCKOUT and item["state"] == "succeeded"
    assert [i["id"] for i in data.analyses_page(service, "alpha", 3, 3)["items"]] == ids[1::-1]
    assert [i["id"] for i in data.analyses_page(service, "beta")["items"]] == [beta]
    shape = data.analyses_page(service, "alpha", search="SHAPE")
    assert shape["total"] == 1 and shape["items"][0]["id"] == ids[2]
    both = data.analyses_page(service, "alpha", search="knockout image->question")
    assert [i["id"] for i in both["items"]] == [ids[3]]
    assert data.analyses_page(service, "alpha", search=ids[4][:10])["items"][0]["id"] == ids[4]
    assert data.analyses_page(service, "alpha", search="color knockout shape")["total"] == 0
    paged = data.analyses_page(service, "alpha", 2, 2, search="color")
    assert paged["total"] == 4 and [i["id"] for i in paged["items"]] == [ids[1], ids[0]]
    with pytest.raises(data.DataError, match="enter yours in the token field"):
        data.analyses_page(service, "")
    with pytest.raises(data.DataError, match="valid API token"):
        data.analyses_page(service, "gamma")


def test_only_the_owner_deletes_and_the_list_follows(hosted):
    service, ids, beta = hosted
    with pytest.raises(data.DataError, match=f"not allowed: only the token that submitted analysis {ids[0]}"):
        data.delete(service, ids[0], "beta")
    assert data.delete(service, ids[0], "alpha") is True
    assert data.analyses_page(service, "alpha")["total"] == 4
    with pytest.raises(data.DataError, match="unknown analysis"):
        data.status(service, ids[0])
    assert [i["id"] for i in data.analyses_page(service, "beta")["items"]] == [beta]  # beta's own is kept


def test_open_mode_lists_every_analysis(redis_url):  # noqa: F811
    redis.Redis.from_url(redis_url).flushdb()
    service = make_service(redis_url)
    first = data.submit(service, {**BASE, "seed": 1})["id"]
    second = data.submit(service, {**BASE, "seed": 2, "measure": "mmi"})["id"]
    page = data.analyses_page(service, None)
    assert [i["id"] for i in page["items"]] == [second, first] and page["items"][0]["measure"] == "mmi"
    assert [i["id"] for i in data.analyses_page(service, "anything", search="mmi")["items"]] == [second]


def test_table_rows_and_pager():
    items = [{"id": "a" * 32, "state": "running", "progress": 0.42, "created_at": 86400.0, "model": "demo",
              "tasks": ["color", "shape"], "n_questions": 50, "knockout": KNOCKOUT},
             {"id": "b" * 32, "state": "failed", "error": "out of memory", "created_at": 0, "model": "demo",
              "tasks": ["color"], "knockout": None}]
    rows = layout.analyses_table(items).children[1].children
    cells = [[str(cell.children) for cell in row.children[1:6]] for row in rows]
    assert cells[0] == ["demo", "color, shape (50 q)", "image->question in layers 0-2", "running (42 %)",
                        "1970-01-02 00:00"]
    assert cells[1][2:4] == ["none", "failed"] and rows[1].children[4].title == "out of memory"
    reopen, delete = rows[0].children[6].children
    assert reopen.href == f"?analysis={'a' * 32}&tab=results" and delete.id == {"type": "analysis-delete",
                                                                                 "index": "a" * 32}
    marked = layout.analyses_table(items, open_id="a" * 32, demo_id="b" * 32).children[1].children
    assert [[tag.children for tag in row.children[0].children[1:]] for row in marked] == [["open"], ["demo"]]
    assert "is-open" in marked[0].className and "is-open" not in marked[1].className
    assert analyses_callbacks.page_range(10, 2, 12) == "11-12 of 12 analyses"
    assert analyses_callbacks.page_range(0, 1, 1) == "1-1 of 1 analysis" and analyses_callbacks.page_range(0, 0, 0) == ""
    assert analyses_callbacks.next_offset("analyses-next", 0, 12) == 10
    assert analyses_callbacks.next_offset("analyses-next", 10, 12) == 10  # no page after the last
    assert analyses_callbacks.next_offset("analyses-prev", 10, 12) == 0
    assert analyses_callbacks.next_offset("analyses-search", 10, 12) == 0
