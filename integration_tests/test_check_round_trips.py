"""`check` over a far link: its round trips, and each step still named where steps go together.

Users' Redis is often in another zone or region (1-40 ms a round trip), where check's cost is
its round trips: the connection steps (AUTH, SELECT, INFO, PING, CLIENT SETNAME) go in one, the
probe writes of every chosen cache type and their deletes in another, on one connection (the
probe's, which the node's pool keeps). A proxy on loopback counts the client's turns: runs of
bytes it sends before the server answers, one round trip each.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from destination_redis.config import parse_config
from destination_redis.topology import open_router
from integration_tests.connector_runs import check_here, failed_message
from integration_tests.servers import RedisServer

PASSWORD = "Rtt-pw-5d8e1a"  # noqa: S105  # a test server's


class TurnCounter:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream_port>, counting the client's turns and connections."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.turns = 0
        self.connections = 0
        self._last: dict[int, str] = {}  # per connection: who sent the last bytes
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self.connections += 1
                number = self.connections
                self._sockets += [client, upstream]
            for source, target, side in ((client, upstream, "client"), (upstream, client, "server")):
                threading.Thread(target=self._pump, args=(number, source, target, side), daemon=True).start()

    def _pump(self, number: int, source: socket.socket, target: socket.socket, side: str) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                with self._lock:
                    if side == "client" and self._last.get(number) != "client":
                        self.turns += 1
                    self._last[number] = side
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def admin(password_server: RedisServer) -> Iterator[redis.Redis]:
    with password_server.flushed_client() as client:
        yield client


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"db": 2, "ttl_seconds": 60},
        {"cache_type": "hash_fields", "streams": [{"name": "users", "key_template": "user:{id}"}]},
        {"streams": [{"name": "a", "cache_type": "list"}, {"name": "b", "cache_type": "string"},
                     {"name": "c", "cache_type": "sorted_set", "score_field": "n"},
                     {"name": "d", "cache_type": "stream"}]},
    ],
    ids=["hash", "db-and-ttl", "template", "several-types"],
)
def test_check_takes_two_round_trips_on_one_connection(
    password_server: RedisServer, admin: redis.Redis, extra: dict[str, Any]
) -> None:
    counter = TurnCounter(password_server.port)
    try:
        status, message = check_here(password_server.config(port=counter.port, **extra))
    finally:
        counter.close()
    assert status == "SUCCEEDED", message
    assert (counter.turns, counter.connections) == (2, 1)
    for db in (0, 2):
        assert password_server.client(db=db).dbsize() == 0  # the probe keys deleted in the same trip


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"db": 99}, ["SELECT failed at", "99 was asked for"]),
        ({"db": 3, "password": "Wrong-pw-77aa"}, ["AUTH failed at", "Check the password"]),
        ({"db": 3, "password": None}, ["AUTH failed at", "requires a password, and none is set"]),
    ],
    ids=["select", "wrong-password", "no-password"],
)
def test_a_failing_step_sent_with_others_is_named(
    password_server: RedisServer, extra: dict[str, Any], expected: list[str]
) -> None:
    config = {key: value for key, value in password_server.config(**extra).items() if value is not None}
    message = failed_message(config, f"127.0.0.1:{password_server.port}", *expected)
    assert PASSWORD not in message


def test_a_password_the_server_does_not_have_is_told_apart_behind_select_and_info() -> None:
    """PING's answer, read behind SELECT's and INFO's, says the server serves without AUTH."""
    server = RedisServer().start()
    try:
        failed_message(server.config(password="not-needed-31b9", db=3),  # noqa: S106
                       "AUTH failed", "The server has no password: remove the password")
    finally:
        server.stop()


def test_a_refused_ping_is_reported_by_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """PING goes with the connection steps; check still fails on an answer other than NOPERM."""
    server = RedisServer(args=["--rename-command", "PING", ""])
    monkeypatch.setattr(redis.Redis, "ping", lambda client: bool(client.info("server")))  # for start()
    server.start()
    try:
        failed_message(server.config(), f"PING failed at 127.0.0.1:{server.port}: ERR unknown command")
    finally:
        server.stop()


def test_the_probe_connection_is_the_pools_and_reconnects_with_the_login(
    password_server: RedisServer, admin: redis.Redis
) -> None:
    """The probe's connection serves the first commands; killed, it comes back with AUTH, SELECT
    and CLIENT SETNAME as the pool's own connections do."""
    before = int(admin.info("stats")["total_connections_received"])
    with open_router(parse_config(password_server.config(db=2))) as router:
        router.run([("SET", "first", "1")])
        assert int(admin.info("stats")["total_connections_received"]) == before + 1
        names = [client["name"] for client in admin.client_list()]
        assert "airbyte-destination-redis" in names
        admin.client_kill_filter(_type="normal", skipme=True)
        router.run([("SET", "second", "2")])  # after a lost connection, resent on a new one
        names = [client["name"] for client in admin.client_list()]
        assert "airbyte-destination-redis" in names
    db2 = password_server.client(db=2)
    assert (db2.get("first"), db2.get("second")) == (b"1", b"2")
    assert admin.dbsize() == 0


def test_a_write_refused_in_the_probe_pipeline_names_the_first_command() -> None:
    server = RedisServer().start()
    try:
        server.client().config_set("maxmemory", "1")
        message = failed_message(server.config(), "Write permission check failed",
                                 "INCRBY on a probe key was refused (OOM)", "maxmemory")
        assert "HMSET" not in message
        assert server.client().dbsize() == 0
    finally:
        server.stop()


def test_probe_keys_are_unlinked_where_del_is_refused() -> None:
    """The deletes sent with the probe are refused: UNLINK in a second round trip cleans up."""
    server = RedisServer().start()
    try:
        rules = ["on", f">{PASSWORD}", "~*", "+@all", "-del"]
        server.client().execute_command("ACL", "SETUSER", "no-del", *rules)
        message = failed_message(server.config(username="no-del", password=PASSWORD),
                                 "may not run DEL", "ACL SETUSER no-del +del")
        assert "UNLINK" not in message
        assert server.client().keys("*") == []
    finally:
        server.stop()
