"""`pidflow fetch-model ID`: download a model into the local Hugging Face cache as a separate, timed step,
so that workers never download inside a task (hosted mode refuses models that are not in the cache)."""

from __future__ import annotations

import threading
import time


def fetch_model(model: str, timeout_s: float = 3600.0) -> str:
    """Download `model` (a Hugging Face id) into the cache within `timeout_s` seconds; its local folder.
    TimeoutError when the hub does not deliver in time (e.g. it accepts connections and never answers)."""
    from huggingface_hub import snapshot_download

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["path"] = snapshot_download(model, etag_timeout=min(30.0, timeout_s))
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=run, name="pidflow-fetch", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"could not fetch {model} within {timeout_s:.0f} s (the hub did not deliver); "
                           f"try again, or with a longer --timeout")
    if "error" in outcome:
        raise ValueError(f"could not fetch {model}: {type(outcome['error']).__name__}: {outcome['error']}")
    print(f"[pidflow] {model} is in the local model cache ({time.monotonic() - started:.0f} s)", flush=True)
    return outcome["path"]


def add_fetch_parser(sub) -> None:
    fetch = sub.add_parser("fetch-model", help="download a model into the local cache (before serving it)")
    fetch.add_argument("model", help="a Hugging Face model id, e.g. llava-hf/llava-1.5-7b-hf")
    fetch.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    fetch.set_defaults(func=lambda args: (fetch_model(args.model, args.timeout), 0)[1])
