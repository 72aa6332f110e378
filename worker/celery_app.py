"""The Celery app: broker = REDIS_URL, queues `gpu` (extract) and `cpu` (analyze, finalize), late
acknowledgement, one message at a time per worker process, redelivery after the visibility timeout.

Job state and results live in our own Redis keys (worker.cache), so there is no Celery result backend.
Start a worker with `python -m celery -A worker.celery_app worker -Q gpu,cpu --pool=solo`.
"""

from __future__ import annotations

from celery import Celery

from worker.settings import WorkerSettings

EXTRACT, ANALYZE, FINALIZE = "pidflow.extract", "pidflow.analyze", "pidflow.finalize"
QUEUES = {EXTRACT: "gpu", ANALYZE: "cpu", FINALIZE: "cpu",
          "pidflow.study_part": "gpu", "pidflow.study_finalize": "cpu",
          "pidflow.extract_shard": "gpu", "pidflow.study_shard": "gpu",
          "pidflow.study_prepare": "cpu", "pidflow.study_analyze": "cpu"}  # worker/shards.py  # worker/study_tasks.py
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def create_app(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or WorkerSettings.from_env()
    celery = Celery("pidflow", broker=settings.redis_url, include=["worker.tasks", "worker.heartbeat", "worker.study_tasks"])
    celery.conf.update(
        task_acks_late=True,  # a task is acknowledged when it ends: a killed worker's task is redelivered
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_routes={name: {"queue": queue} for name, queue in QUEUES.items()},
        task_default_queue="cpu",
        task_serializer="json",
        accept_content=["json"],
        task_publish_retry_policy=PUBLISH_RETRY,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep reconnecting while Redis is away
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.restore_interval_s,
            "unacked_restore_throttle": 1,
            "socket_timeout": max(settings.socket_timeout_s, 10.0),
            "socket_connect_timeout": settings.socket_timeout_s,
        },
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_proc_alive_timeout=120,  # prefork children preload models before they report up
    )
    return celery


def _patient_with_a_full_redis() -> None:
    """Keep a worker up while Redis is full (maxmemory, noeviction), instead of "Unrecoverable error":
    - kombu's periodic restore of unacknowledged messages takes a lock with a Redis SET, which a full Redis
      refuses: that round is skipped (the next one, PIDFLOW_RESTORE_INTERVAL_S later, tries again);
    - a queue's size is read with LLENs in a MULTI transaction, and a full Redis refuses every command
      queued in a transaction, reads included: they are read without one (the same numbers)."""
    import logging
    import time

    import redis
    from kombu.transport import redis as kombu_redis

    from worker.messages import is_full_redis

    original = kombu_redis.QoS.restore_visible
    if getattr(original, "pidflow_patient", False):
        return

    def restore_visible(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except redis.exceptions.ResponseError as exc:  # OutOfMemoryError is one
            if not is_full_redis(exc):
                raise
            logging.getLogger("pidflow.worker").error(
                "Redis is full (maxmemory): unacknowledged messages not restored this round")
            return None

    restore_visible.pidflow_patient = True
    kombu_redis.QoS.restore_visible = restore_visible

    def _size(self, queue):
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for pri in self.priority_steps:
                pipe = pipe.llen(self._q_for_pri(queue, pri))
            return sum(size for size in pipe.execute() if isinstance(size, int))

    kombu_redis.Channel._size = _size

    bind = kombu_redis.Channel._queue_bind

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        """Bind as kombu does, unless the binding is already there (the usual case: a write a full Redis
        would refuse); a new binding waits for room, saying so every 10 s."""
        member = self.sep.join([routing_key or "", pattern or "", queue or ""])
        while True:
            try:
                with self.conn_or_acquire() as client:
                    if queue not in self._expires and client.sismember(self.keyprefix_queue % (exchange,), member) \
                            and client.sismember(self.keyprefix_binding_permanent % (exchange,), member):
                        if self.typeof(exchange).type == "fanout":
                            self._fanout_queues[queue] = (exchange, routing_key.replace("#", "*"))
                        return None
                return bind(self, exchange, routing_key, pattern, queue)
            except redis.exceptions.ResponseError as exc:  # OutOfMemoryError and ExecAbortError are ones
                if not (is_full_redis(exc) or isinstance(exc, redis.exceptions.ExecAbortError)):
                    raise
                logging.getLogger("pidflow.worker").error(
                    "Redis is full (maxmemory): cannot bind queue %s yet; retrying in 10 s", queue)
                time.sleep(10)

    kombu_redis.Channel._queue_bind = _queue_bind


_patient_with_a_full_redis()
app = create_app()
celery_app = app


def send(name: str, args: list, redis_url: str | None = None) -> None:
    """Publish task `name` to its queue; through `redis_url` when it differs from the app's broker
    (the API process may be pointed at another Redis after this module was imported)."""
    options = {"queue": QUEUES[name], "retry": True, "retry_policy": PUBLISH_RETRY}
    if redis_url is None or redis_url == app.conf.broker_url:
        app.send_task(name, args=args, **options)
        return
    with app.connection_for_write(redis_url) as connection:
        app.send_task(name, args=args, connection=connection, **options)
