"""Swagger UI and ReDoc for /api/v1/docs and /api/v1/redoc, served from this server (no CDN, never
downloaded by the server). They come from the npm registry (sha512-checked, pinned versions) with their
licences: into the wheel's package data when it is built (setup.py: app/ui/static/vendor/apidocs/), and
into a checkout's static/vendor/apidocs/ at set-up (`python -m app.docs_assets`, run by scripts/setup.sh).
Without them the docs pages say how to get them and link the OpenAPI JSON instead of staying blank."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from app.ui import STATIC_DIR, VENDOR_SUBDIR

if TYPE_CHECKING:  # fastapi is imported where routes are added: setup.py vendors these files without it
    from fastapi import FastAPI

ASSET_DIR = STATIC_DIR / VENDOR_SUBDIR / "apidocs"
SWAGGER, REDOC = ("swagger-ui-dist", "5.35.0"), ("redoc", "2.5.0")
#: file name here -> (npm package, version, member of its tarball)
ASSETS = {
    "swagger-ui-bundle.js": (*SWAGGER, "package/swagger-ui-bundle.js"),
    "swagger-ui.css": (*SWAGGER, "package/swagger-ui.css"),
    "favicon-32x32.png": (*SWAGGER, "package/favicon-32x32.png"),
    "redoc.standalone.js": (*REDOC, "package/bundles/redoc.standalone.js"),
}
#: their licences and notices (Apache-2.0 with its NOTICE, MIT, and those of what the bundles bundle),
#: written beside them and shipped with them; not served
LICENSES = {
    "swagger-ui-dist.LICENSE": (*SWAGGER, "package/LICENSE"),
    "swagger-ui-dist.NOTICE": (*SWAGGER, "package/NOTICE"),
    "swagger-ui-bundle.js.LICENSE.txt": (*SWAGGER, "package/swagger-ui-bundle.js.LICENSE.txt"),
    "redoc.LICENSE": (*REDOC, "package/LICENSE"),
    "redoc.standalone.js.LICENSE.txt": (*REDOC, "package/bundles/redoc.standalone.js.LICENSE.txt"),
}
ASSET_PATH = "/api/v1/docs-assets"
MEDIA = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def installed(asset_dir: Path | None = None) -> bool:
    directory = Path(asset_dir or ASSET_DIR)
    return all((directory / name).is_file() for name in ASSETS)


def install(asset_dir: Path | None = None, registry: str | None = None, timeout: float = 60.0) -> Path:
    """Download (once), verify and write every asset; returns the folder. BundleError when that fails."""
    import json

    from app.ui.plotly_bundle import BundleError, _check_integrity, _get, registry_url

    directory = Path(asset_dir or ASSET_DIR)
    registry = registry or registry_url()
    tarballs: dict[tuple[str, str], bytes] = {}
    for name, (package, version, member) in {**ASSETS, **LICENSES}.items():
        target = directory / name
        if target.is_file():
            continue
        if (package, version) not in tarballs:
            try:
                meta = json.loads(_get(f"{registry}{package}/{version}", timeout))
                url, integrity = meta["dist"]["tarball"], meta["dist"]["integrity"]
            except (ValueError, KeyError, TypeError) as exc:
                raise BundleError(f"{package}@{version}: the registry's answer has no dist.tarball/integrity") from exc
            tarball = _get(url, timeout)
            _check_integrity(tarball, integrity)
            tarballs[(package, version)] = tarball
        try:
            with tarfile.open(fileobj=io.BytesIO(tarballs[(package, version)]), mode="r:gz") as archive:
                handle = archive.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                content = handle.read()
        except (KeyError, tarfile.TarError) as exc:
            raise BundleError(f"{package}@{version}: the tarball has no {member}") from exc
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(content)
        partial.replace(target)
    return directory


def _missing_page(kind: str, openapi_url: str):
    from fastapi.responses import HTMLResponse

    return HTMLResponse(
        f"<!doctype html><title>pidflow API</title><h1>pidflow API</h1><p>The {kind} files are not installed on "
        "this server (set-up downloads them from the npm registry: <code>python -m app.docs_assets</code>). "
        f'The API is described by its OpenAPI document: <a href="{openapi_url}">{openapi_url}</a>, and in '
        "docs/api.md.</p>")


def add_docs_routes(app: FastAPI, openapi_url: str = "/api/v1/openapi.json") -> None:
    """GET /api/v1/docs (Swagger UI), /api/v1/redoc (ReDoc) and their assets, all from this server."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse

    @app.get("/api/v1/docs", include_in_schema=False)
    def swagger_ui():
        if not installed():
            return _missing_page("Swagger UI", openapi_url)
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} API",
                                   swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSET_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSET_PATH}/favicon-32x32.png")

    @app.get("/api/v1/redoc", include_in_schema=False)
    def redoc():
        if not installed():
            return _missing_page("ReDoc", openapi_url)
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} API",
                              redoc_js_url=f"{ASSET_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSET_PATH}/favicon-32x32.png", with_google_fonts=False)

    @app.get(ASSET_PATH + "/{name}", include_in_schema=False)
    def asset(name: str):
        path = ASSET_DIR / name
        if name not in ASSETS or not path.is_file():
            return HTMLResponse("not found", status_code=404)
        return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"),
                            headers={"Cache-Control": "public, max-age=86400"})


def main() -> int:
    from app.ui.plotly_bundle import BundleError

    try:
        folder = install()
    except BundleError as exc:
        print(f"error: {exc}; /api/v1/docs and /api/v1/redoc will link the OpenAPI JSON instead", file=sys.stderr)
        return 1
    print(f"[setup] API docs (Swagger UI, ReDoc): {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
