"""Analyses as the API hands them out, over the job layer's content-addressed jobs (Redis keys, no web).

The job layer names a job by a content hash of its request, so identical requests share one computation;
anyone who can guess a request can compute that name. In hosted mode the API therefore never shows it:
each token's submission of a request gets an **analysis id**, 32 random hex digits, owned by that token (the
first and only submitter under that id), pointing at the shared job. Deleting an analysis drops its record;
the job itself is deleted (and its running tasks stop) once no analysis points at it. In open mode (no
tokens) the analysis id is the job id, as before.

Share links are random tokens read as the handle ``share:<token>``: they resolve to the analysis for reads
only, reveal no id, expire (PIDFLOW_SHARE_TTL_S), and can be listed and revoked by the owner.

Keys (`<tk>` = a token's sha256 prefix, never the token):
  pidflow:analysis:<aid>     hash job, owner, created_at             (PIDFLOW_RESULT_TTL_S, refreshed)
  pidflow:mine:<tk>:<job>    string aid: the token's analysis of that job (same TTL)
  pidflow:index:<tk>         zset aid -> created_at: the token's analyses; `pidflow:index:all` in open mode
  pidflow:refs:<job>         set of aids pointing at a job
  pidflow:active:<tk>        set of the token's aids that may still be queued or running (quota)
  pidflow:share:<stok>       hash analysis, created_at, expires_at  (expires with the link)
  pidflow:shares:<aid>       zset stok -> expires_at
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

PREFIX = "pidflow:"
SHARE_HANDLE = "share:"
OPEN_INDEX = f"{PREFIX}index:all"
SERVER_OWNER = "server"  # owner of what the server submits itself (no token can delete or share it)


def token_key(token: str) -> str:
    """A token's stable, non-reversible name in Redis keys."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Registry:
    """Analysis records, ownership, listings and share links in Redis; `hosted` picks random ids."""

    def __init__(self, client, *, hosted: bool, ttl_s: int, share_ttl_s: int):
        self.redis, self.hosted, self.ttl_s, self.share_ttl_s = client, hosted, ttl_s, share_ttl_s

    # -- analyses ---------------------------------------------------------------------------------
    def adopt(self, job_id: str, token: str | None) -> str:
        """The analysis id under which `token` sees job `job_id`: an existing one of this token, else a
        new random one it owns (hosted); the job id itself in open mode."""
        now = time.time()
        if not self.hosted:
            pipe = self.redis.pipeline()
            pipe.zadd(OPEN_INDEX, {job_id: now}, nx=True)
            pipe.expire(OPEN_INDEX, self.ttl_s)  # entries of expired jobs are pruned when a page lists them
            pipe.execute()
            return job_id
        tk = token_key(token) if token is not None else SERVER_OWNER  # the server's own (its demo)
        mine = f"{PREFIX}mine:{tk}:{job_id}"
        while True:
            aid = _text(self.redis.get(mine))
            if aid is not None and self.redis.exists(f"{PREFIX}analysis:{aid}"):
                break
            fresh = secrets.token_hex(16)
            if aid is None and not self.redis.set(mine, fresh, nx=True, ex=self.ttl_s):
                continue  # a concurrent identical submission of this token won: use its id
            if aid is not None and not self.redis.set(mine, fresh, xx=True, ex=self.ttl_s):
                continue
            aid = fresh
            pipe = self.redis.pipeline()
            pipe.hset(f"{PREFIX}analysis:{aid}", mapping={"job": job_id, "owner": tk, "created_at": now})
            pipe.zadd(f"{PREFIX}index:{tk}", {aid: now})
            pipe.sadd(f"{PREFIX}refs:{job_id}", aid)
            pipe.execute()
            break
        pipe = self.redis.pipeline()
        for key in (mine, f"{PREFIX}analysis:{aid}", f"{PREFIX}index:{tk}", f"{PREFIX}refs:{job_id}"):
            pipe.expire(key, self.ttl_s)
        pipe.execute()
        return aid

    def job_of(self, handle: str) -> str:
        """The job behind an analysis id or a `share:<token>` handle; KeyError if unknown or expired."""
        if handle.startswith(SHARE_HANDLE):
            handle = self.shared_analysis(handle[len(SHARE_HANDLE):])
        if not self.hosted:
            return handle
        job = _text(self.redis.hget(f"{PREFIX}analysis:{handle}", "job")) if handle.isalnum() else None
        if job is None:
            raise KeyError(f"unknown analysis {handle!r}")
        return job

    def owner_check(self, aid: str, token: str | None, action: str) -> None:
        """PermissionError unless `token` owns analysis `aid` (hosted); share handles never may."""
        if aid.startswith(SHARE_HANDLE):
            raise PermissionError(f"a share link gives read-only access; it cannot {action}")
        self.job_of(aid)
        if not self.hosted:
            return
        owner = _text(self.redis.hget(f"{PREFIX}analysis:{aid}", "owner"))
        if token is None or owner != token_key(token):
            raise PermissionError(f"only the token that submitted analysis {aid} may {action} it")

    def forget(self, aid: str) -> tuple[str, bool]:
        """Drop an analysis record, its share links and index entries: (job id, True when no other
        analysis points at the job any more, so it should be deleted too)."""
        job = self.job_of(aid)
        for stok in self.share_tokens(aid):
            self.redis.delete(f"{PREFIX}share:{stok}")
        if not self.hosted:
            self.redis.delete(f"{PREFIX}shares:{aid}")
            self.redis.zrem(OPEN_INDEX, aid)
            return job, True
        tk = _text(self.redis.hget(f"{PREFIX}analysis:{aid}", "owner"))
        pipe = self.redis.pipeline(transaction=False)  # no MULTI: a full Redis must still take deletes
        pipe.delete(f"{PREFIX}analysis:{aid}", f"{PREFIX}shares:{aid}", f"{PREFIX}mine:{tk}:{job}")
        pipe.zrem(f"{PREFIX}index:{tk}", aid)
        pipe.srem(f"{PREFIX}active:{tk}", aid)
        pipe.srem(f"{PREFIX}refs:{job}", aid)
        pipe.scard(f"{PREFIX}refs:{job}")
        *_, left = pipe.execute()
        return job, left == 0

    def listing(self, token: str | None, offset: int, limit: int) -> tuple[int, list[str]]:
        """(total, analysis ids newest first) of this token (hosted) or of everyone (open)."""
        key = f"{PREFIX}index:{token_key(token)}" if self.hosted and token else OPEN_INDEX
        if self.hosted and not token:
            return 0, []
        total = int(self.redis.zcard(key))
        ids = [_text(a) for a in self.redis.zrevrange(key, offset, offset + limit - 1)]
        return total, ids

    def unlist(self, token: str | None, aid: str) -> None:
        """Remove an id whose job expired from its listing."""
        key = f"{PREFIX}index:{token_key(token)}" if self.hosted and token else OPEN_INDEX
        self.redis.zrem(key, aid)

    # -- quota of queued work ---------------------------------------------------------------------
    def active(self, token: str) -> list[str]:
        return [_text(a) for a in self.redis.smembers(f"{PREFIX}active:{token_key(token)}")]

    def mark_active(self, token: str, aid: str, active: bool) -> None:
        key = f"{PREFIX}active:{token_key(token)}"
        if active:
            self.redis.sadd(key, aid)
            self.redis.expire(key, self.ttl_s)
        else:
            self.redis.srem(key, aid)

    # -- share links ------------------------------------------------------------------------------
    def share(self, aid: str, ttl_s: int | None = None) -> dict:
        """A new share link of `aid`: {share_token, created_at, expires_at}."""
        ttl = int(ttl_s or self.share_ttl_s)
        stok = secrets.token_urlsafe(18)
        now = time.time()
        link = {"share_token": stok, "created_at": now, "expires_at": now + ttl}
        pipe = self.redis.pipeline()
        pipe.hset(f"{PREFIX}share:{stok}", mapping={"analysis": aid, "created_at": now, "expires_at": now + ttl})
        pipe.expire(f"{PREFIX}share:{stok}", ttl)
        pipe.zadd(f"{PREFIX}shares:{aid}", {stok: now + ttl})
        pipe.expire(f"{PREFIX}shares:{aid}", max(ttl, self.ttl_s))
        pipe.execute()
        return link

    def share_tokens(self, aid: str) -> list[str]:
        """Every share token `aid` has handed out (live or expired): what its delete revokes."""
        return [_text(stok) for stok in self.redis.zrange(f"{PREFIX}shares:{aid}", 0, -1)]

    def shared_analysis(self, stok: str) -> str:
        """The analysis a live share link names; KeyError when the link is unknown, expired or revoked, or
        its analysis was deleted (a link made while its analysis was being deleted is in no index)."""
        aid = _text(self.redis.hget(f"{PREFIX}share:{stok}", "analysis")) if stok else None
        if aid is None or self.redis.zscore(f"{PREFIX}shares:{aid}", stok) is None:
            raise KeyError("unknown, expired or revoked share link, or its analysis was deleted")
        return aid

    def shares(self, aid: str) -> list[dict]:
        """Live share links of `aid`, oldest first (expired ones pruned)."""
        key = f"{PREFIX}shares:{aid}"
        self.redis.zremrangebyscore(key, "-inf", time.time())
        links = []
        for stok in self.redis.zrange(key, 0, -1):
            stok = _text(stok)
            raw = self.redis.hgetall(f"{PREFIX}share:{stok}")
            if raw:
                links.append({"share_token": stok, "created_at": float(raw[b"created_at"]),
                              "expires_at": float(raw[b"expires_at"])})
        return links

    def revoke(self, aid: str, stok: str) -> bool:
        """Revoke one share link of `aid`; False if it was not one of its live links."""
        if _text(self.redis.hget(f"{PREFIX}share:{stok}", "analysis")) != aid:
            return False
        self.redis.delete(f"{PREFIX}share:{stok}")
        self.redis.zrem(f"{PREFIX}shares:{aid}", stok)
        return True
