"""The cartesian plotly.js bundle: download from an npm-style registry (a local one here), integrity
check, clear failures, and the dashboard page loading it instead of plotly.py's full bundle."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.ui import plotly_bundle
from app.ui.plotly_bundle import PACKAGE, BundleError, bundle_name, install, installed_bundle

SCRIPT = b"window.Plotly = {version: '9.9.9'};\n"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def registry():
    """A local registry serving PACKAGE@9.9.9; `state` sets the tarball and integrity, counts requests."""
    state = {"tarball": tarball({"package/plotly-cartesian.min.js": SCRIPT, "package/LICENSE": b"MIT"}),
             "integrity": None, "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            state["requests"].append(self.path)
            base = f"http://127.0.0.1:{server.server_port}"
            if self.path == f"/{PACKAGE}/9.9.9":
                dist = {"tarball": f"{base}/t.tgz", "integrity": state["integrity"] or sri(state["tarball"])}
                body = json.dumps({"name": PACKAGE, "version": "9.9.9", "dist": dist}).encode()
            elif self.path == "/t.tgz":
                body = state["tarball"]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/"
    yield state
    server.shutdown()
    server.server_close()


def test_install_writes_the_verified_script_once(registry, tmp_path):
    path = install(tmp_path, version="9.9.9", registry=registry["url"])
    assert path == tmp_path / bundle_name("9.9.9") and path.read_bytes() == SCRIPT
    assert (tmp_path / plotly_bundle.LICENSE_NAME).read_bytes() == b"MIT"  # the licence travels with it
    assert installed_bundle(tmp_path, version="9.9.9") == path
    assert installed_bundle(tmp_path, version="9.9.8") is None  # another plotly.js version: not used
    requests = len(registry["requests"])
    assert install(tmp_path, version="9.9.9", registry=registry["url"]) == path
    assert len(registry["requests"]) == requests  # already installed: no download


def test_a_tampered_tarball_is_refused_and_nothing_written(registry, tmp_path):
    registry["integrity"] = sri(b"something else")
    with pytest.raises(BundleError, match="does not match the registry's sha512 integrity"):
        install(tmp_path, version="9.9.9", registry=registry["url"])
    assert list(tmp_path.iterdir()) == []


def test_a_tarball_without_the_script_is_refused(registry, tmp_path):
    registry["tarball"] = tarball({"package/README.md": b"no script"})
    with pytest.raises(BundleError, match="has no package/plotly-cartesian.min.js"):
        install(tmp_path, version="9.9.9", registry=registry["url"])


def test_unknown_version_and_unreachable_registry_say_which_url(registry, tmp_path):
    with pytest.raises(BundleError, match=f"could not download {registry['url']}{PACKAGE}/1.0.0"):
        install(tmp_path, version="1.0.0", registry=registry["url"])
    with pytest.raises(BundleError, match="could not download http://127.0.0.1:9/"):
        install(tmp_path, version="9.9.9", registry="http://127.0.0.1:9/", timeout=5)


def test_cli_fails_with_a_message_and_exit_1(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(plotly_bundle, "VENDOR_DIR", tmp_path)
    monkeypatch.setenv("PIDFLOW_NPM_REGISTRY", "http://127.0.0.1:9")
    assert plotly_bundle.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download http://127.0.0.1:9/plotly.js-cartesian-dist-min/")
    assert "full plotly.js bundle" in err


class NoService:
    """The page's layout asks for models and datasets; an empty server has none."""

    def models(self):
        return []

    def datasets(self):
        return []


def index_html(monkeypatch, vendor_dir) -> str:
    from app.ui import create_dash_app

    monkeypatch.setattr(plotly_bundle, "VENDOR_DIR", vendor_dir)
    app = create_dash_app(NoService())
    return app.server.test_client().get("/").get_data(as_text=True)


def test_page_loads_the_installed_bundle_before_dash(monkeypatch, tmp_path):
    name = bundle_name(plotly_bundle.plotlyjs_version())
    (tmp_path / name).write_bytes(SCRIPT)
    html = index_html(monkeypatch, tmp_path)
    url = f"/assets/vendor/{name}"
    assert f'<link rel="preload" href="{url}" as="script">' in html
    assert html.index(f'<script src="{url}"></script>') < html.index("dash_renderer")
    assert "plotly/package_data/plotly.min.js" not in html


def test_without_the_bundle_the_page_preloads_plotly_full_bundle(monkeypatch, tmp_path):
    html = index_html(monkeypatch, tmp_path)
    assert "/assets/vendor/" not in html
    assert '<link rel="preload" href="/_dash-component-suites/plotly/package_data/plotly.min.js"' in html
