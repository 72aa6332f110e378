"""A worker stays up when a full Redis refuses its ack: kombu acknowledges with a MULTI transaction, which
a Redis at maxmemory (noeviction) refuses whole, and the error used to end the worker ("Unrecoverable
error: OutOfMemoryError", rc=1). The same removals without a transaction are deletions a full Redis takes.
Real Redis, real kombu channel."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

import worker.heartbeat  # noqa: F401 - makes kombu's acks patient, as in every worker
from app.redis_local import LocalRedis


def _full_now(client, margin: int = 300_000) -> None:
    client.config_set("maxmemory", client.info("memory")["used_memory"] - margin)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", b"x")


@pytest.fixture
def full_later(tmp_path):
    with LocalRedis(directory=tmp_path / "redis", maxmemory="64mb") as server:
        yield server.url, redis.Redis.from_url(server.url)


def test_an_ack_refused_by_a_full_redis_goes_through_without_a_transaction(full_later):
    url, client = full_later
    with Connection(url) as connection:
        queue = connection.SimpleQueue("ack-test")
        queue.put({"job": 1})
        message = queue.get(timeout=5)
        tag = message.delivery_tag
        assert client.zscore("unacked_index", tag) is not None and client.hexists("unacked", tag)
        _full_now(client)
        message.ack()  # refused in a MULTI; done without one
        assert client.zscore("unacked_index", tag) is None and not client.hexists("unacked", tag)
        qos = message.channel.qos
        qos._flush()  # kombu's own bookkeeping too: the tag is no longer held
        assert tag not in qos._delivered
        queue.close()
