"""plotly.js's cartesian bundle for the dashboard: vendored into the wheel when it is built, installed at
set-up into a checkout, from the npm registry; the server itself never downloads it.

Every figure the dashboard draws is a cartesian scatter/area trace, so it needs only plotly.js's
"cartesian" partial bundle (about 1.5 MB) instead of the full one that plotly.py ships (about 4.8 MB).
Parsing and initialising the full bundle is most of a cold browser's first view. The bundle is not kept in
the repository: `python -m app.ui.plotly_bundle` downloads the release that matches plotly.py's own
plotly.js version, checks the registry's sha512 integrity, and writes it with plotly.js's licence to
static/vendor/ (a checkout's set-up: scripts/setup.sh); building the wheel (setup.py) puts the release of
`PLOTLYJS_VERSION`, the one plotly.py of constraints.txt ships, into the wheel's package data
(app/ui/static/vendor/). Without a bundle matching the installed plotly.py the dashboard falls back to
plotly.py's full bundle and works the same, only slower to start.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from app.ui import STATIC_DIR, VENDOR_SUBDIR

PACKAGE = "plotly.js-cartesian-dist-min"
FILE_IN_TARBALL = "package/plotly-cartesian.min.js"
LICENSE_IN_TARBALL = "package/LICENSE"
LICENSE_NAME = "plotly.js.LICENSE"  # plotly.js's MIT licence, written beside the bundle
#: the plotly.js release that plotly.py of constraints.txt ships (a test keeps them equal): the one a wheel carries
PLOTLYJS_VERSION = "4.1.1"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
VENDOR_DIR = STATIC_DIR / VENDOR_SUBDIR


class BundleError(RuntimeError):
    """The bundle could not be downloaded or did not match the registry's integrity hash."""


def plotlyjs_version() -> str:
    """The plotly.js version plotly.py ships (the figures are built against it)."""
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def bundle_name(version: str) -> str:
    return f"plotly-cartesian-{version}.min.js"


def installed_bundle(vendor_dir: Path | None = None, version: str | None = None) -> Path | None:
    """The installed cartesian bundle for plotly.py's plotly.js version, or None."""
    path = Path(vendor_dir or VENDOR_DIR) / bundle_name(version or plotlyjs_version())
    return path if path.is_file() else None


def registry_url() -> str:
    """npm's registry, or the one named by PIDFLOW_NPM_REGISTRY / NPM_CONFIG_REGISTRY (a mirror)."""
    url = os.environ.get("PIDFLOW_NPM_REGISTRY") or os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY
    return url if url.endswith("/") else url + "/"


def install(vendor_dir: Path | None = None, version: str | None = None, registry: str | None = None,
            timeout: float = 60.0) -> Path:
    """Download, verify and write the bundle; returns its path (already installed: no download)."""
    version = version or plotlyjs_version()
    vendor_dir = Path(vendor_dir or VENDOR_DIR)
    target = vendor_dir / bundle_name(version)
    licence = vendor_dir / LICENSE_NAME
    if target.is_file() and licence.is_file():
        return target
    registry = registry or registry_url()
    try:
        meta = json.loads(_get(f"{registry}{PACKAGE}/{version}", timeout))
        tarball_url, integrity = meta["dist"]["tarball"], meta["dist"]["integrity"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{PACKAGE}@{version}: the registry's answer has no dist.tarball/integrity") from exc
    tarball = _get(tarball_url, timeout)
    _check_integrity(tarball, integrity)
    vendor_dir.mkdir(parents=True, exist_ok=True)
    for path, member in ((target, FILE_IN_TARBALL), (licence, LICENSE_IN_TARBALL)):
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(_extract(tarball, member))
        partial.replace(path)
    return target


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BundleError(f"could not download {url}: {exc}") from exc


def _check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise BundleError(f"unsupported integrity algorithm {algorithm!r} (expected sha512)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise BundleError(f"{PACKAGE}: the downloaded tarball does not match the registry's sha512 integrity")


def _extract(tarball: bytes, name: str = FILE_IN_TARBALL) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile(name)
            if member is None:
                raise KeyError(name)
            return member.read()
    except (KeyError, tarfile.TarError) as exc:
        raise BundleError(f"{PACKAGE}: the tarball has no {name}") from exc


def main() -> int:
    if installed_bundle() is None:
        print(f"[setup] downloading {PACKAGE} for the dashboard", flush=True)
    try:
        path = install()
    except BundleError as exc:
        print(f"error: {exc}; the dashboard will use plotly.py's full plotly.js bundle", file=sys.stderr)
        return 1
    print(f"[setup] plotly.js cartesian bundle: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
