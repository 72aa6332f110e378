"""A small REST client for a pidflow server (used by `pidflow analyze --server URL`)."""

from __future__ import annotations

import os
import time

import httpx

CHUNK_BYTES = 1 << 20  # what an upload reads from disk and sends at a time
UPLOAD_READ_TIMEOUT_S = 1800.0  # the server checks and stores a big file before it answers


class AnalysisFailed(Exception):
    """The server ran the analysis and it failed; the message is the server's reason."""


class PidflowClient:
    """Talks to /api/v1 of a pidflow server. HTTP 4xx -> ValueError with the server's message;
    unreachable server or 5xx -> ConnectionError."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--server must be an http(s) URL, got {base_url!r}")
        token = token or os.environ.get("PIDFLOW_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PidflowClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, "/api/v1" + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach the pidflow server at {self.base_url}: {exc}") from exc
        if response.status_code >= 500:
            raise ConnectionError(f"server error {response.status_code}: {_detail(response)}")
        if response.status_code >= 400:
            raise ValueError(f"server refused ({response.status_code}): {_detail(response)}")
        return response

    def submit(self, request: dict) -> dict:
        return self._request("POST", "/analyses", json=request).json()

    def upload_limits(self) -> dict | None:
        """The server's limits for features files (OPTIONS /api/v1/features): max_upload_bytes,
        feature_folder, max_run_bytes_without_feature_folder; None from a server too old to say."""
        try:
            response = self._http.request("OPTIONS", "/api/v1/features")
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach the pidflow server at {self.base_url}: {exc}") from exc
        if response.status_code != 200 or "max_upload_bytes" not in response.text:
            return None
        return response.json()

    def upload_features(self, path, chunk_bytes: int = CHUNK_BYTES) -> dict:
        """Upload a features file (POST /features); its summary, with the `request` that analyses it. The
        file's size is checked against the server's limits first (nothing is sent when it is over them), and
        the body is streamed from disk in chunks of `chunk_bytes` (the file is never held in memory)."""
        from pathlib import Path

        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no features file {path}")
        size = path.stat().st_size
        check_upload_size(size, self.upload_limits(), path.name, self.base_url)

        def chunks():
            with open(path, "rb") as file:
                while block := file.read(chunk_bytes):
                    yield block

        return self._request("POST", "/features", params={"filename": path.name}, content=chunks(),
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(size)},
                             timeout=httpx.Timeout(self._http.timeout.connect, read=UPLOAD_READ_TIMEOUT_S)).json()

    def status(self, analysis_id: str) -> dict:
        return self._request("GET", f"/analyses/{analysis_id}").json()

    def result(self, analysis_id: str) -> dict:
        return self._request("GET", f"/analyses/{analysis_id}/result").json()

    def wait(self, analysis_id: str, progress: bool = True, poll_s: float = 0.5,
             timeout_s: float | None = None) -> dict:
        """Poll until the analysis finishes (tqdm bar on stderr); returns the result document."""
        from tqdm import tqdm

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with tqdm(total=100, unit="%", disable=not progress, desc="queued") as bar:
            while True:
                job = self.status(analysis_id)
                bar.set_description(job.get("stage") or job["state"])
                bar.update(max(0, round(100 * float(job.get("progress") or 0)) - bar.n))
                if job["state"] == "succeeded":
                    return self.result(analysis_id)
                if job["state"] == "failed":
                    raise AnalysisFailed(f"analysis {analysis_id} failed: {job.get('error') or 'no reason given'}")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"analysis {analysis_id} still {job['state']} after {timeout_s} s")
                time.sleep(poll_s)


def check_upload_size(size: int, limits: dict | None, name: str, server: str) -> None:
    """ValueError, before anything is sent, when a file of `size` bytes is over the server's limits."""
    if not limits:
        return
    mib = 1 << 20
    limit = limits.get("max_upload_bytes")
    if limit is not None and size > limit:
        raise ValueError(f"{name} is {size / mib:.1f} MiB; the server at {server} accepts features files up to "
                         f"{limit / mib:.1f} MiB (its PIDFLOW_MAX_UPLOAD_BYTES): nothing was sent. Raise that limit "
                         f"on the server, keep fewer layers or questions, or analyse locally (without --server)")
    in_redis = limits.get("max_run_bytes_without_feature_folder")
    if not limits.get("feature_folder") and in_redis is not None and size > in_redis:
        raise ValueError(f"{name} is {size / mib:.1f} MiB; the server at {server} has no feature folder, so each run "
                         f"of an upload must fit one Redis value ({in_redis / mib:.0f} MiB): nothing was sent. Set "
                         f"PIDFLOW_FEATURE_DIR on the server (`pidflow serve` keeps one in its data dir), or analyse "
                         f"locally (without --server)")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    return str(detail)


def run_remote_features(server: str, path, options: dict, token: str | None = None, progress: bool = True) -> dict:
    """Upload a features file, submit its analysis with `options` (measure, dims, ... tasks) and return the
    result document."""
    with PidflowClient(server, token=token) as client:
        uploaded = client.upload_features(path)
        job = client.submit({**uploaded["request"], **options})
        return client.wait(job["id"], progress=progress)


def run_remote_analysis(server: str, request: dict, token: str | None = None, progress: bool = True) -> dict:
    """Submit `request` to the server, show progress, return the result document."""
    with PidflowClient(server, token=token) as client:
        job = client.submit(request)
        return client.wait(job["id"], progress=progress)
