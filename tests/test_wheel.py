"""pidflow as users install it: an sdist and a wheel built from this checkout the way `python -m build` does
(PEP 517 hooks: the sdist first, the wheel from the unpacked sdist, with no network), the wheel installed into a
fresh venv outside the repository, and `pidflow serve` from there serving the stylesheet, the plotly.js
cartesian bundle and the API docs UI from the installed package's data, with the same page as the checkout.

The venv is fresh but not bare: a .pth file puts a copy-free view of .venv's site-packages (symlinks to every
entry but pidflow's own) on its path, so no dependency is downloaded or installed; pidflow itself comes only from
the wheel. pip's resolver then shows that installing the wheel, with its server extra, into an environment that
already has the tested torch (and everything else) installs pidflow alone and keeps that torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from app import docs_assets
from app.redis_local import free_port
from app.served import stop_served, wait_healthy
from app.ui import plotly_bundle

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sysconfig.get_paths()["purelib"])  # .venv's site-packages (this interpreter's)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "constraints.txt",
           "app", "pidcore", "worker", "static")
BUNDLE = plotly_bundle.bundle_name(plotly_bundle.PLOTLYJS_VERSION)
CHROMIUM = "/usr/bin/chromium"
OFFLINE = {"PIDFLOW_NPM_REGISTRY": "http://127.0.0.1:9/", "PIP_NO_INDEX": "1"}  # any download would fail

pytestmark = pytest.mark.slow


def run(command: list, cwd: Path, timeout: float = 120, env: dict | None = None) -> str:
    proc = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **OFFLINE, **(env or {})})
    assert proc.returncode == 0, f"{command}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def hook(name: str, out: Path, cwd: Path) -> Path:
    """Call setuptools' PEP 517 hook `name` (build_sdist / build_wheel) in `cwd`, as `python -m build` does."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{name}(sys.argv[1]))"
    return out / run([sys.executable, "-c", code, out], cwd).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """The sdist and the wheel, built from a copy of the checkout (a build writes build/ and *.egg-info)."""
    vendor = ROOT / "static" / "vendor"
    wanted = [vendor / BUNDLE, vendor / plotly_bundle.LICENSE_NAME] + [
        vendor / "apidocs" / name for name in {**docs_assets.ASSETS, **docs_assets.LICENSES}]
    if not all(path.is_file() for path in wanted):
        pytest.skip("static/vendor/ lacks the plotly.js bundle or the API docs UI (set-up could not reach the "
                    "npm registry): building the wheel would download them")
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.part")
    for name in SOURCES:
        path = ROOT / name
        (shutil.copytree(path, source / name, ignore=ignore) if path.is_dir() else
         (source.mkdir(exist_ok=True), shutil.copy2(path, source / name)))
    dist = tmp / "dist"
    dist.mkdir()
    start = time.monotonic()
    sdist = hook("build_sdist", dist, source)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    unpacked = next((tmp / "unpacked").iterdir())
    wheel = hook("build_wheel", dist, unpacked)  # from the sdist alone: it carries the vendored files
    return {"sdist": sdist, "wheel": wheel, "seconds": time.monotonic() - start, "tmp": tmp}


@pytest.fixture(scope="module")
def venv(built) -> Path:
    """A fresh venv outside the repository with .venv's packages but pidflow's on its path, and the wheel;
    `built["resolved"]`: what pip's resolver would install for pidflow[server,test] from the wheel there."""
    tmp = built["tmp"]
    farm = tmp / "site-view"
    farm.mkdir()
    for entry in SITE.iterdir():
        if "pidflow" not in entry.name.lower() and not entry.name.endswith(".pth"):
            (farm / entry.name).symlink_to(entry)
    home = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", home], tmp)
    python = home / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).strip())
    (site / "dependencies-from-dotvenv.pth").write_text(f"{farm}\n")
    pip = [python, "-m", "pip", "--isolated", "install", "--no-index"]  # no index, find-links or pip.conf
    report = run([*pip, "--dry-run", "--report", "-", "-q", f"pidflow[server,test] @ {built['wheel'].as_uri()}"], tmp)
    built["resolved"] = {item["metadata"]["name"]: item["metadata"]["version"]
                         for item in json.loads(report)["install"]}
    # older minor releases of torch and transformers (stand-in wheels: metadata only, nothing downloaded)
    older = tmp / "older"
    older.mkdir()
    for name, version in OLDER + TOO_OLD:
        stand_in(older / f"{name}-{version}-py3-none-any.whl", name, version)
    wheel = f"pidflow[server] @ {built['wheel'].as_uri()}"
    report = run([*pip, "--find-links", older, "--dry-run", "--report", "-", "-q", wheel,
                  *(f"{name}=={version}" for name, version in OLDER)], tmp)
    built["older"] = {item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(report)["install"]}
    built["too old"] = [subprocess.run([str(part) for part in (*pip, "--find-links", older, "--dry-run", "-q", wheel,
                                                               f"{name}=={version}")],
                                       cwd=tmp, capture_output=True, text=True, timeout=120)
                        for name, version in TOO_OLD]
    run([*pip, "-q", "--no-deps", built["wheel"]], tmp)
    return home


OLDER = [("torch", "2.12.1"), ("transformers", "5.23.0")]
TOO_OLD = [("torch", "2.10.0"), ("transformers", "5.21.1")]


def stand_in(path: Path, name: str, version: str) -> None:
    """A wheel that is only metadata: enough for pip's resolver (--dry-run), never installed."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: pidflow-tests\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")


def test_sdist_and_wheel_carry_what_the_server_serves(built):
    wheel, sdist = built["wheel"], built["sdist"]
    assert wheel.name == "pidflow-0.1.0-py3-none-any.whl" and sdist.name == "pidflow-0.1.0.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("app/ui/static/pidflow.css") == (ROOT / "static" / "pidflow.css").read_bytes()
        metadata = archive.read("pidflow-0.1.0.dist-info/METADATA").decode()
    static = "app/ui/static/"
    assert {static + "upload-limit.js", static + "vendor/" + BUNDLE, static + "vendor/plotly.js.LICENSE",
            static + "vendor/apidocs/swagger-ui-bundle.js", static + "vendor/apidocs/swagger-ui.css",
            static + "vendor/apidocs/redoc.standalone.js", static + "vendor/apidocs/swagger-ui-dist.LICENSE",
            static + "vendor/apidocs/swagger-ui-dist.NOTICE", static + "vendor/apidocs/redoc.LICENSE"} <= names
    assert not any(name.startswith("tests/") for name in names)
    assert "pidflow-0.1.0.dist-info/licenses/LICENSE" in names
    # ranges, not pins; the server's packages only with the extra
    assert "Requires-Dist: torch<3,>=2.11" in metadata and "Provides-Extra: server" in metadata
    assert re.search(r"Requires-Dist: fastapi.*; extra == \"server\"", metadata)
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "constraints.txt", f"static/vendor/{BUNDLE}", "static/pidflow.css"} <= members
    print(f"wheel {wheel.stat().st_size / 1e6:.1f} MB, sdist {sdist.stat().st_size / 1e6:.1f} MB, "
          f"built in {built['seconds']:.1f} s")


def test_installing_the_wheel_where_torch_is_installed_keeps_it(built, venv):
    """pip's resolver, offline, in a venv that has the tested torch and the rest: pidflow[server,test] from the
    wheel needs nothing else (a range that excluded the installed torch would fail there: no index)."""
    assert built["resolved"] == {"pidflow": "0.1.0"}  # torch 2.13.0, transformers 5.24.0 ... are kept
    versions = run([venv / "bin" / "python", "-c", "import torch, transformers; "
                    "print(torch.__version__, transformers.__version__)"], built["tmp"]).split()
    from importlib.metadata import version

    assert versions == [version("torch"), version("transformers")]


def test_the_ranges_admit_older_minor_releases_of_torch_and_transformers(built, venv):
    """pip's resolver: pidflow[server] with torch 2.12 and transformers 5.23 resolves (only those two would
    change); torch 2.10 and transformers 5.21 are refused by the declared lower bounds."""
    assert built["older"] == {"pidflow": "0.1.0", **dict(OLDER)}
    for (name, version), proc in zip(TOO_OLD, built["too old"], strict=True):
        assert proc.returncode != 0 and "conflicting dependencies" in proc.stderr, (name, version, proc.stderr)


@pytest.fixture(scope="module")
def installed_server(built, venv):
    """`pidflow serve` of the installed wheel, run from a folder outside the repository; its base URL."""
    tmp = built["tmp"]
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    python = venv / "bin" / "python"
    where = json.loads(run([python, "-c", "import json, app, app.ui, pidcore, worker; print(json.dumps("
                            "[app.__file__, pidcore.__file__, worker.__file__, str(app.ui.STATIC_DIR)]))"], cwd))
    assert all(path.startswith(str(venv)) for path in where), where  # the installed copy, not the checkout
    assert where[3].endswith("app/ui/static")

    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "PYTHONPATH")}
    env.update({"PIDFLOW_PREWARM": "0", "OMP_NUM_THREADS": "1", "PIDFLOW_DATA_DIR": str(tmp / "data"), **OFFLINE})
    process = subprocess.Popen([venv / "bin" / "pidflow", "serve", "--port", str(port), "--workers", "0"],
                               cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process, workers=0, timeout_s=120)
        yield base
    finally:
        process.data_dir, process.temporary_data = tmp / "data", False
        stop_served(process, timeout_s=30)


def test_the_installed_wheel_serves_the_same_page_as_the_checkout(installed_server):
    with httpx.Client(base_url=installed_server, timeout=30) as client:
        page = client.get("/").text
        assert assets(page) == assets(checkout_page())  # the same stylesheet, scripts, plotly.js bundle
        assert "/assets/pidflow.css" in page and f"/assets/vendor/{BUNDLE}" in page
        css = client.get("/assets/pidflow.css")
        assert css.status_code == 200 and css.content == (ROOT / "static" / "pidflow.css").read_bytes()
        bundle = client.get(f"/assets/vendor/{BUNDLE}")
        assert bundle.status_code == 200 and len(bundle.content) > 1_000_000
        assert bundle.content == (ROOT / "static" / "vendor" / BUNDLE).read_bytes()
        docs = client.get("/api/v1/docs").text
        assert "/api/v1/docs-assets/swagger-ui-bundle.js" in docs and "not installed" not in docs
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            response = client.get(f"/api/v1/docs-assets/{name}")
            assert response.status_code == 200 and len(response.content) > 100_000, name
        assert "/api/v1/docs-assets/redoc.standalone.js" in client.get("/api/v1/redoc").text


@pytest.mark.browser
def test_in_a_browser_the_installed_page_is_styled_and_the_docs_ui_renders(installed_server, built):
    """Chromium: pidflow.css applies, plotly.js is the cartesian bundle, Swagger UI draws the API."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (scripts/test.sh installs Debian's)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(built["tmp"] / "profile"), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            scripts = []
            page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
            page.goto(installed_server + "/")
            page.wait_for_selector(".header h1", timeout=60_000)
            style = page.evaluate("[getComputedStyle(document.body).backgroundColor, "
                                  "getComputedStyle(document.querySelector('.header h1')).color]")
            assert style == ["rgb(246, 247, 249)", "rgb(0, 114, 178)"]  # static/pidflow.css
            page.wait_for_function("window.Plotly !== undefined", timeout=60_000)
            assert page.evaluate("window.Plotly.version") == plotly_bundle.PLOTLYJS_VERSION
            assert [url for url in scripts if "plotly" in url.rsplit("/", 1)[-1]] == [
                f"{installed_server}/assets/vendor/{BUNDLE}"]
            (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "tests" / "artifacts" / "wheel-installed-page.png"))
            page.goto(installed_server + "/api/v1/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
            assert "pidflow" in page.locator(".swagger-ui .info .title").inner_text()
            assert page.locator(".opblock").count() > 5  # the operations, drawn from openapi.json
        finally:
            browser.close()


def assets(page: str) -> list[str]:
    """The stylesheets and scripts a page links, without dash's cache-busting query strings."""
    return sorted(re.sub(r"\?.*$", "", url) for url in re.findall(r'(?:href|src)="([^"]+)"', page)
                  if "/assets/" in url or "_dash-component-suites" in url)


def checkout_page() -> str:
    from app.ui import create_dash_app

    class NoService:
        def models(self):
            return []

        def datasets(self):
            return []

    return create_dash_app(NoService()).server.test_client().get("/").get_data(as_text=True)
