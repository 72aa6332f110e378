"""Redis state of analysis jobs. Every write that belongs to one attempt of a job is a Lua script that
first checks the job still exists, is not finished and is on that attempt, so a late or redelivered task
of a deleted or restarted job changes nothing.

Keys (`<id>` = job id): `pidflow:job:<id>` (hash: state, stage, progress, ...), `pidflow:features:<id>`
(hash: run -> Features bytes), `pidflow:layers:<id>` (hash: "<run>:<batch>" -> JSON layer entries),
`pidflow:parts:<id>` (hash: "<run>:<batch>" -> fraction of a batch in flight), `pidflow:result:<id>`.
"""

from __future__ import annotations

import hashlib
import logging
import time

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.messages import is_full_redis
from worker.settings import WorkerSettings

log = logging.getLogger("pidflow.worker")
PREFIX = "pidflow:"
TERMINAL = ("succeeded", "failed")
CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# ARGV[1] = attempt. Returns 1 when the job exists, is on that attempt and not finished, else 0.
_ALIVE = """
local function alive(job, attempt)
  local h = redis.call('HMGET', job, 'attempt', 'state')
  return h[1] == attempt and h[2] ~= 'succeeded' and h[2] ~= 'failed' and h[2] ~= false
end
"""

# KEYS: job, features, layers, parts, result. ARGV: id, request, revision, now, result_ttl, work_ttl.
_CREATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'failed' then
  if state ~= 'succeeded' then return {'existing', redis.call('HGET', KEYS[1], 'attempt')} end
  if redis.call('EXISTS', KEYS[5]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('EXPIRE', KEYS[5], ARGV[5])
    return {'existing', redis.call('HGET', KEYS[1], 'attempt')}
  end
end
local attempt = 1
if state then attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0') + 1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'stage', 'queued', 'progress', '0',
  'message', 'waiting for a worker', 'error', '', 'created_at', ARGV[4], 'updated_at', ARGV[4],
  'request', ARGV[2], 'revision', ARGV[3], 'attempt', tostring(attempt), 'enqueued', '0',
  'results_written', '0')
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {'new', tostring(attempt)}
"""

# KEYS: job. ARGV: attempt, stage, progress, message, now, ttl. Progress only grows within an attempt.
_PROGRESS = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
if tonumber(ARGV[3]) >= old then
  redis.call('HSET', KEYS[1], 'progress', ARGV[3], 'stage', ARGV[2], 'message', ARGV[4])
end
redis.call('HSET', KEYS[1], 'state', 'running', 'updated_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""

# KEYS: job, target hash. ARGV: attempt, ttl, nx ('1' keeps existing fields), field, value, ...
# Returns the number of fields newly set, or -1 if the job is gone, finished or restarted.
_PUT = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return -1 end
local added = 0
for i = 4, #ARGV, 2 do
  if ARGV[3] == '1' then added = added + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  else added = added + redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return added
"""

# KEYS: job, field hash. ARGV: attempt, field. HINCRBY within the job's attempt; -1 if not alive.
_COUNT = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return -1 end
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""

# KEYS: job, layers, parts, result. ARGV: attempt, field, value, ttl.
# Returns {new (0/1), batches done, 1 if finalize should be queued}, or {-1, 0, 0} if not alive.
_LAND = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return {-1, 0, 0} end
local new = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HDEL', KEYS[3], ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '-1')
local done = redis.call('HLEN', KEYS[2])
local go = 0
if done >= total and (new == 1 or redis.call('EXISTS', KEYS[4]) == 0) then go = 1 end
return {new, done, go}
"""

# KEYS: job, parts, layers. ARGV: attempt, field, fraction, ttl. Returns "done + sum of parts" or -1.
_PART = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return '-1' end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
local sum = redis.call('HLEN', KEYS[3])
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do sum = sum + tonumber(v) end
return tostring(sum)
"""

# KEYS: job, result, features, layers, parts. ARGV: attempt, document, now, ttl.
# 1: written now; 0: a result was already there; -1: the job is gone, finished or restarted.
_FINISH = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return -1 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'succeeded', 'stage', 'done', 'progress', '1', 'message', 'done',
  'error', '', 'updated_at', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'results_written', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
return 1
"""

# KEYS: job, features, layers, parts. ARGV: attempt, error, now, ttl. 1 if marked failed. The intermediate
# data goes first: when Redis is full (noeviction) that frees room for the small write of the error.
_FAIL = _ALIVE + """
if not alive(KEYS[1], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[2], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def job_id_for(content_hash: str, revision: str, code_version: str) -> str:
    """Job id: sha256 of the request's content hash, the model revision and the code version (hex, 32)."""
    return hashlib.sha256(f"{content_hash}\n{revision}\n{code_version}".encode()).hexdigest()[:32]


def connect(settings: WorkerSettings) -> redis.Redis:
    """A Redis client that fails fast (a couple of quick retries) when the server is away."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=settings.socket_timeout_s, socket_connect_timeout=settings.socket_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), health_check_interval=30)


def retrying(fn, *args, wait_s: float, errors: tuple = CONNECTION_ERRORS, **kwargs):
    """Call fn, waiting up to `wait_s` seconds for Redis to come back on `errors` (connection errors)."""
    deadline = time.monotonic() + wait_s
    pause = 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except errors as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    """Typed access to the job keys above; every method is one round trip (or one Lua script)."""

    def __init__(self, client: redis.Redis, settings: WorkerSettings):
        self.redis, self.settings = client, settings
        self._scripts = {name: client.register_script(source) for name, source in (
            ("create", _CREATE), ("progress", _PROGRESS), ("put", _PUT), ("count", _COUNT), ("land", _LAND),
            ("part", _PART), ("finish", _FINISH), ("fail", _FAIL))}

    @staticmethod
    def keys(job_id: str) -> dict[str, str]:
        return {kind: f"{PREFIX}{kind}:{job_id}"
                for kind in ("job", "features", "layers", "parts", "result", "running", "probe")}

    def _run(self, name: str, job_id: str, kinds: tuple[str, ...], *args):
        keys = self.keys(job_id)
        return self._script(name, [keys[kind] for kind in kinds], [str(a) for a in args])

    def _script(self, name: str, keys: list[str], args: list):
        try:
            return self._scripts[name](keys=keys, args=args)
        except redis.exceptions.ResponseError as exc:  # refused inside the script (Redis 7): say "full"
            if is_full_redis(exc):
                raise redis.exceptions.OutOfMemoryError(str(exc)) from exc
            raise

    # -- job hash --------------------------------------------------------------------------------
    def create(self, job_id: str, request_json: str, revision: str) -> tuple[str, str]:
        """("new", attempt) for a new or restarted (failed, or result evicted) job, else ("existing", ...)."""
        outcome, attempt = self._run("create", job_id, ("job", "features", "layers", "parts", "result"), job_id,
                                     request_json, revision, time.time(), self.settings.result_ttl_s,
                                     self.settings.work_ttl_s)
        return _text(outcome), _text(attempt)

    def get(self, job_id: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(self.keys(job_id)["job"])
        return {_text(k): _text(v) for k, v in raw.items()} if raw else None

    def mark_enqueued(self, job_id: str, attempt: str) -> bool:
        return self.put(job_id, attempt, "job", {"enqueued": "1"}) >= 0

    def progress(self, job_id: str, attempt: str, stage: str, fraction: float, message: str) -> bool:
        """Raise the job's progress to `fraction` (0..1); False if the job is gone, finished or restarted."""
        return bool(self._run("progress", job_id, ("job",), attempt, stage, f"{fraction:.4f}", message, time.time(),
                              self.settings.work_ttl_s))

    def put(self, job_id: str, attempt: str, kind: str, fields: dict, nx: bool = False) -> int:
        """HSET (HSETNX with nx) fields into the job's `kind` hash; new field count, -1 if not alive."""
        pairs = [item for pair in fields.items() for item in pair]  # values may be bytes: not through _run's str()
        keys = self.keys(job_id)
        return self._script("put", [keys["job"], keys[kind]],
                            [attempt, self.settings.work_ttl_s, "1" if nx else "0", *pairs])

    def count(self, job_id: str, attempt: str, name: str) -> int:
        """Increment the job's counter field `name` (e.g. deliveries of a task); -1 if not alive."""
        return int(self._run("count", job_id, ("job", "job"), attempt, name))

    def fail(self, job_id: str, attempt: str, error: str) -> bool:
        """Mark the job failed with `error` and drop its intermediate data; False if not alive."""
        return bool(self._run("fail", job_id, ("job", "features", "layers", "parts"), attempt, error, time.time(),
                              self.settings.failed_ttl_s))

    def drop_work(self, job_id: str, attempt: str) -> None:
        """Delete the intermediate data (features, layers, parts) of this attempt of the job with plain
        DELs, which a full Redis always accepts, so that the fail script after it finds room for its small
        write without relying on how a Redis version treats writes inside a script begun while full."""
        raw = self.get(job_id)
        if raw is not None and raw.get("attempt") == attempt:
            keys = self.keys(job_id)
            self.redis.delete(keys["features"], keys["layers"], keys["parts"])

    def delete(self, job_id: str) -> bool:
        keys = list(self.keys(job_id).values())
        pipe = self.redis.pipeline(transaction=False)  # no MULTI: a full Redis refuses every command in one
        pipe.exists(keys[0])
        pipe.delete(*keys)
        existed, _ = pipe.execute()
        return bool(existed)

    # -- features and layer batches ---------------------------------------------------------------
    def features(self, job_id: str, run: str) -> bytes | None:
        return self.redis.hget(self.keys(job_id)["features"], run)

    def has_batch(self, job_id: str, field: str) -> bytes | None:
        """The stored JSON of a finished layer batch, or None."""
        return self.redis.hget(self.keys(job_id)["layers"], field)

    def batches(self, job_id: str) -> dict[str, bytes]:
        return {_text(k): v for k, v in self.redis.hgetall(self.keys(job_id)["layers"]).items()}

    def land(self, job_id: str, attempt: str, field: str, value: str) -> tuple[int, int, bool]:
        """Store a batch once (HSETNX): (new: 1/0, -1 if not alive; batches done; queue finalize?)."""
        new, done, go = self._run("land", job_id, ("job", "layers", "parts", "result"), attempt, field, value,
                                  self.settings.work_ttl_s)
        return int(new), int(done), bool(go)

    def part(self, job_id: str, attempt: str, field: str, fraction: float) -> float | None:
        """Record a batch's own progress; batches done plus fractions in flight, None if not alive."""
        total = float(_text(self._run("part", job_id, ("job", "parts", "layers"), attempt, field, f"{fraction:.4f}",
                                      self.settings.work_ttl_s)))
        return None if total < 0 else total

    # -- result -----------------------------------------------------------------------------------
    def finish(self, job_id: str, attempt: str, document_json: str) -> int:
        return int(self._run("finish", job_id, ("job", "result", "features", "layers", "parts"), attempt,
                             document_json, time.time(), self.settings.result_ttl_s))

    def result(self, job_id: str) -> bytes | None:
        return self.redis.get(self.keys(job_id)["result"])

    def keep_probe(self, job_id: str, features: bytes) -> None:
        """Keep a finished job's baseline pooled features (npz bytes) as long as its result: the server
        places a new question among them (app/own_terms.py). Deleted with the job."""
        self.redis.set(self.keys(job_id)["probe"], features, ex=self.settings.result_ttl_s)

    def probe(self, job_id: str) -> bytes | None:
        return self.redis.get(self.keys(job_id)["probe"])
