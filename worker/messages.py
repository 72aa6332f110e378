"""Messages handed to API clients: no absolute server paths (they tell an outsider how the server is laid
out, and mean nothing to them)."""

from __future__ import annotations

import re

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")
FULL_REDIS = ("the server's Redis is full (maxmemory, noeviction policy): it accepts no new work until an "
              "operator frees memory or raises maxmemory")


def redact_paths(text: str) -> str:
    """`text` with every absolute path /a/b/c.ext replaced by `.../c.ext`."""
    return _ABSOLUTE_PATH.sub(lambda match: f".../{match.group(1)}", str(text))
