"""Worker liveness in Redis, independent of Celery's control.ping (a busy `--pool=solo` worker answers no
ping). Each ready worker refreshes `pidflow:worker:<name>` (expires after PIDFLOW_HEARTBEAT_TTL_S) from a
daemon thread and lists `<name>` in the set `pidflow:workers`; a clean shutdown removes both, a killed
worker's key expires. `live_workers(client)` counts the names whose key still exists (one round trip).

The same beat renews the worker's **leases**: the broker keeps each delivered, unacknowledged message in
kombu's `unacked_index` sorted set scored by its delivery time, and hands it to another worker once that
score is older than the visibility timeout (PIDFLOW_VISIBILITY_TIMEOUT_S, 30 s by default). Every beat
re-scores the messages this worker holds to "now", so a live worker's long task is never redelivered,
while a killed worker's message comes back within the timeout plus a restore interval (about 40 s).
Every SWEEP_EVERY_S (and at start) a worker's beat also removes the feature files of uploads whose keys
expired (worker.uploads) and the feature folders of jobs and studies that no longer need them
(worker.feature_store.sweep), so they do not wait for the next upload.
Each task's `pidflow:running:<job>` hash names the worker of its tasks (field -> worker name), so a
status can say that a job's worker is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from functools import lru_cache

import redis
from celery.signals import (
    task_postrun,
    task_prerun,
    task_received,
    worker_init,
    worker_ready,
    worker_shutdown,
)

from worker.cache import connect
from worker.settings import WorkerSettings

log = logging.getLogger("pidflow.worker")
KEY_PREFIX = "pidflow:worker:"
INDEX = "pidflow:workers"
UNACKED_INDEX = "unacked_index"  # kombu's Redis transport default (unacked_index_key)
RUNNING_PREFIX = "pidflow:running:"
SWEEP_EVERY_S = 600  # each worker sweeps the files of expired uploads at start and then this often

# KEYS: kombu's unacked index. ARGV: now, delivery tags. Re-scores the tags still unacknowledged; returns
# the tags no longer there (acknowledged or restored), so the caller stops renewing them.
_RENEW = """
local gone = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  else table.insert(gone, ARGV[i]) end
end
return gone
"""
_held: set[str] = set()  # delivery tags of the messages this process received and has not seen acked
_held_lock = threading.Lock()

# KEYS: index. ARGV: key prefix. Counts members whose key exists and drops the others from the index.
_COUNT = """
local live = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. name) == 1 then live = live + 1 else redis.call('SREM', KEYS[1], name) end
end
return live
"""


def _patient_acks() -> None:
    """Acknowledge through a full Redis instead of ending the worker: kombu removes an acked message from
    its unacked index and hash in a MULTI transaction, which a Redis at maxmemory refuses whole (every
    queued command, deletions included), and the error ended the worker ("Unrecoverable error"). On that
    refusal the same two deletions are sent without a transaction (a full Redis takes deletions); if even
    they are refused the message stays unacknowledged and is redelivered after the visibility timeout."""
    from kombu.transport import redis as kombu_redis
    from kombu.transport.virtual import QoS as VirtualQoS

    from worker.messages import is_full_redis

    original = kombu_redis.QoS.ack
    if getattr(original, "pidflow_patient", False):
        return

    def ack(self, delivery_tag):
        try:
            return original(self, delivery_tag)
        except redis.exceptions.ResponseError as exc:  # OutOfMemoryError and ExecAbortError are ones
            if not (is_full_redis(exc) or isinstance(exc, redis.exceptions.ExecAbortError)):
                raise
        try:
            with self.channel.conn_or_acquire() as client:
                client.zrem(self.unacked_index_key, delivery_tag)
                client.hdel(self.unacked_key, delivery_tag)
        except redis.exceptions.ResponseError as exc:
            if not is_full_redis(exc):
                raise
            log.error("Redis is full (maxmemory): message %s not acknowledged; it will be redelivered", delivery_tag)
        VirtualQoS.ack(self, delivery_tag)

    ack.pidflow_patient = True
    kombu_redis.QoS.ack = ack


_patient_acks()


def live_workers(client: redis.Redis) -> int:
    """Workers whose heartbeat has not expired. Raises redis errors (ConnectionError, TimeoutError)."""
    return int(client.eval(_COUNT, 1, INDEX, KEY_PREFIX))


class Heartbeat:
    """Refreshes one worker's key (and its leases) every min(`ttl_s` / 3, `interval_s`) seconds from a
    daemon thread until `stop()`."""

    def __init__(self, client: redis.Redis, name: str, ttl_s: float, interval_s: float | None = None,
                 sweep_s: float | None = None):
        if ttl_s <= 0:
            raise ValueError(f"heartbeat TTL must be positive, got {ttl_s}")
        self.client, self.name, self.ttl_s = client, name, ttl_s
        self.interval_s = min(ttl_s / 3, interval_s or ttl_s)
        self.sweep_s, self._next_sweep = sweep_s, 0.0
        self.key = KEY_PREFIX + name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info = json.dumps({"name": name, "host": socket.gethostname(), "pid": os.getpid(),
                                 "started_at": time.time()})

    def beat(self) -> None:
        """Write the key (with its TTL) and the index entry together, then renew the held leases."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, self._info, px=max(1, round(1000 * self.ttl_s)))
        pipe.sadd(INDEX, self.name)
        pipe.execute()
        renew_leases(self.client)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.exceptions.RedisError as exc:  # Redis away: keep trying, the key expires meanwhile
                log.warning("heartbeat of %s not written: %s", self.name, exc)
            if self.sweep_s is not None and time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.sweep_s
                self.sweep()
            if self._stop.wait(self.interval_s):
                return

    def sweep(self) -> list[str]:
        """Remove the feature files nothing needs any more, now rather than at the next upload: expired
        uploads' (worker.uploads' sweep; their shas) and the folders of jobs and studies that are gone,
        finished, failed or cancelled (worker.feature_store.sweep; their names). What was removed."""
        from worker import feature_store
        from worker.uploads import UploadStore

        removed: list[str] = []
        for what, step in (("expired uploads", lambda: UploadStore(self.client).remove_expired_files()),
                           ("feature folders", lambda: feature_store.sweep(self.client))):
            try:
                done = step()
            except (redis.exceptions.RedisError, OSError, ValueError) as exc:
                log.warning("%s not swept: %s", what, exc)
                continue
            if done:
                log.info("swept the files of %d %s: %s", len(done), what, ", ".join(name[:16] for name in done))
            removed += done
        return removed

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="pidflow-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and remove the key and index entry (best effort: Redis may be away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            pipe.srem(INDEX, self.name)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("heartbeat of %s not removed (it expires in %.0f s): %s", self.name, self.ttl_s, exc)


def renew_leases(client: redis.Redis) -> int:
    """Re-score this process's unacknowledged messages to now (one round trip); how many were renewed."""
    with _held_lock:
        tags = sorted(_held)
    if not tags:
        return 0
    gone = [t.decode() if isinstance(t, bytes) else t for t in client.eval(_RENEW, 1, UNACKED_INDEX, time.time(), *tags)]
    with _held_lock:
        _held.difference_update(gone)
    return len(tags) - len(gone)


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    return connect(WorkerSettings.from_env())


def worker_name() -> str:
    return _current.name if _current is not None else f"{socket.gethostname()}:{os.getpid()}"


@task_received.connect
def _hold(request=None, **_) -> None:
    """In the consumer (main) process: remember the delivery tag of each message it receives."""
    tag = getattr(getattr(request, "message", None), "delivery_tag", None)
    if tag:
        with _held_lock:
            _held.add(str(tag))


def _running_field(task) -> tuple[str, str] | None:
    args = list(getattr(task.request, "args", None) or [])
    if len(args) < 2 or not isinstance(args[0], str):
        return None
    field = task.name.rsplit(".", 1)[-1] + ("" if len(args) < 4 else f":{args[2]}:{args[3]}")
    return RUNNING_PREFIX + args[0], field


@task_prerun.connect
def _running(task=None, **_) -> None:
    """Name this worker as the one running a job's task (what status reads when the worker is gone)."""
    where = _running_field(task) if task is not None else None
    if where is None:
        return
    try:
        pipe = _client().pipeline()
        pipe.hset(where[0], where[1], worker_name())
        pipe.expire(where[0], WorkerSettings.from_env().work_ttl_s)
        pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("could not record the running task: %s", exc)


@task_postrun.connect
def _finished(task=None, **_) -> None:
    where = _running_field(task) if task is not None else None
    if where is None:
        return
    try:
        _client().hdel(*where)
    except redis.exceptions.RedisError:
        pass


def lost_tasks(client: redis.Redis, job_id: str) -> list[tuple[str, str]]:
    """(task, worker) of a job's tasks whose worker's heartbeat expired (killed, out of memory, lost)."""
    running = {k.decode(): v.decode() for k, v in client.hgetall(RUNNING_PREFIX + job_id).items()}
    if not running:
        return []
    names = sorted(set(running.values()))
    pipe = client.pipeline(transaction=False)  # reads only; a full Redis refuses all of a MULTI
    for name in names:
        pipe.exists(KEY_PREFIX + name)
    alive = dict(zip(names, pipe.execute(), strict=True))
    return [(task, name) for task, name in running.items() if not alive[name]]


def lost_task_count(client: redis.Redis) -> int:
    """Tasks, over all jobs, whose worker's heartbeat expired and that no worker has taken up again yet."""
    return sum(len(lost_tasks(client, key.decode()[len(RUNNING_PREFIX):]))
               for key in client.scan_iter(match=RUNNING_PREFIX + "*", count=500))


def eviction_problem(client: redis.Redis) -> str | None:
    """Why this Redis would lose work silently (a maxmemory-policy that evicts keys when it is full), saying
    which setting to change; None when it keeps every key (noeviction) or cannot be asked (CONFIG disabled).
    Raises redis connection errors."""
    try:
        config = client.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError as exc:  # CONFIG renamed or disabled, as on some managed Redis
        log.warning("could not read Redis's maxmemory-policy (%s): make sure it is noeviction", exc)
        return None
    policy = next(iter(config.values()), None) if config else None
    policy = policy.decode() if isinstance(policy, bytes) else policy
    if policy in (None, "noeviction"):
        return None
    return (f"Redis's maxmemory-policy is {policy}: when Redis fills up it evicts keys, losing queued and running "
            f"work and results without a word. Set maxmemory-policy to noeviction (redis.conf, redis-server "
            f"--maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction); a full Redis then answers "
            f"507 and nothing is lost")


@worker_init.connect
def _refuse_an_evicting_redis(**_) -> None:
    """Before a worker consumes anything: exit, saying what to change, when its Redis evicts keys."""
    try:
        problem = eviction_problem(connect(WorkerSettings.from_env()))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return  # Redis away: the worker waits for it as usual
    if problem:  # SystemExit: Celery's signal dispatch logs and swallows other exceptions
        raise SystemExit(f"pidflow worker not started: {problem}")


_current: Heartbeat | None = None


@worker_ready.connect
def _start(sender=None, **_) -> None:
    """In the worker's main process once it consumes: beat as `<celery hostname>:<pid>`."""
    global _current
    settings = WorkerSettings.from_env()
    name = f"{getattr(sender, 'hostname', None) or socket.gethostname()}:{os.getpid()}"
    # beat often enough to renew leases well within the visibility timeout
    _current = Heartbeat(connect(settings), name, settings.heartbeat_ttl_s,
                         interval_s=settings.visibility_timeout_s / 4, sweep_s=SWEEP_EVERY_S).start()


@worker_shutdown.connect
def _stop(**_) -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None
