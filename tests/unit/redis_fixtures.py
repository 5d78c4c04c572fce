"""A real redis-server per test (random loopback port, temp dir), torn down after.

from redis_fixtures import redis_server  # noqa: F401
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from semcascade.testing.redis_server import RedisServer


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server; .ci/run does it)")
    with RedisServer() as server:
        yield server
