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
          "pidflow.extract_shard": "gpu"}  # worker/shards.py  # worker/study_tasks.py
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
