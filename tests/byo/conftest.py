"""Fixtures of the bring-your-own-activations tests."""

import pytest
import redis

from app.redis_local import LocalRedis


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A client of a private local Redis (one per test module)."""
    server = LocalRedis(directory=tmp_path_factory.mktemp("redis")).start()
    connection = redis.Redis.from_url(server.url)
    yield connection
    connection.close()
    server.stop()
