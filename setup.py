"""Build hooks only (the project is described in pyproject.toml): the wheel carries what the server serves.

`build_py` copies the repository's top-level static/ (the dashboard's CSS and scripts) into the wheel as
package data, app/ui/static/, with the vendored plotly.js cartesian bundle and the API docs UI (Swagger UI,
ReDoc) and their licences under app/ui/static/vendor/; the installed server finds them with
importlib.resources (app.ui.static_dir) and never downloads anything. The vendored files come from
static/vendor/ when a checkout's set-up already put them there (scripts/setup.sh), else from the npm
registry now (pinned versions, sha512-checked: app/ui/plotly_bundle.py, app/docs_assets.py). `sdist` does
the same first, so an sdist carries them and a wheel built from it needs no network. A build that cannot
get them fails, saying why: a wheel without them would serve an unstyled page (PIDFLOW_BUILD_WITHOUT_VENDOR=1
builds one anyway, falling back to plotly.py's full bundle and a docs page that links the OpenAPI JSON).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "static"
PACKAGED = Path("app", "ui", "static")  # inside the wheel


def vendor() -> Path:
    """static/vendor/ with the pinned plotly.js cartesian bundle, the API docs UI and their licences."""
    sys.path.insert(0, str(ROOT))
    try:
        from app import docs_assets
        from app.ui import plotly_bundle
        from app.ui.plotly_bundle import BundleError
    finally:
        sys.path.remove(str(ROOT))
    folder = STATIC / "vendor"
    try:
        plotly_bundle.install(folder, version=plotly_bundle.PLOTLYJS_VERSION)
        docs_assets.install(folder / "apidocs")
    except BundleError as exc:
        if os.environ.get("PIDFLOW_BUILD_WITHOUT_VENDOR") == "1":
            print(f"warning: building without the vendored UI files: {exc}", file=sys.stderr)
            return folder
        raise SystemExit(f"pidflow build: could not vendor the dashboard's plotly.js and the API docs UI ({exc}). "
                         "Run `python -m app.ui.plotly_bundle` and `python -m app.docs_assets` where the npm "
                         "registry can be reached (PIDFLOW_NPM_REGISTRY names a mirror), or set "
                         "PIDFLOW_BUILD_WITHOUT_VENDOR=1 to build a wheel without them.") from exc
    return folder


def vendored_files(folder: Path) -> list[Path]:
    """The files of static/vendor/ a wheel carries: the pinned bundle, the docs UI, their licences."""
    sys.path.insert(0, str(ROOT))
    try:
        from app import docs_assets
        from app.ui import plotly_bundle
    finally:
        sys.path.remove(str(ROOT))
    names = [plotly_bundle.bundle_name(plotly_bundle.PLOTLYJS_VERSION), plotly_bundle.LICENSE_NAME]
    names += [f"apidocs/{name}" for name in {**docs_assets.ASSETS, **docs_assets.LICENSES}]
    return [folder / name for name in names if (folder / name).is_file()]


class BuildPy(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install serves the checkout's static/ itself
        target = Path(self.build_lib) / PACKAGED
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in sorted(STATIC.iterdir()):
            if path.is_file():  # static/vendor/ is not copied whole: only the pinned files below
                self.copy_file(str(path), str(target / path.name), preserve_mode=False)
        folder = vendor()
        for path in vendored_files(folder):
            destination = target / "vendor" / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(path), str(destination), preserve_mode=False)


class Sdist(sdist):
    def run(self):
        vendor()  # an sdist carries static/vendor/ (MANIFEST.in): a wheel built from it needs no network
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
