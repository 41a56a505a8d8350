"""LiveKit's ``redis.db``, ``redis.username`` and the Sentinels' own credentials, against real
``redis-server`` processes: a data node whose default user is off (``user default off``) and
whose LiveKit data is in database 2, and a Sentinel with an ACL user of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from lkchaos.redis import client
from lkchaos.settings import Settings
from tests.unit.test_redis_client import MISSING, SERVER, Server, _base, _start, _stop, free_port

USER, PASSWORD, DB = "livekit", "acl-pass-for-tests", 2
SENTINEL_USER, SENTINEL_PASSWORD = "watcher", "sentinel-pass-for-tests"


def _answers(port: int, username: str, password: str) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, username=username, password=password,
                     socket_timeout=1) as r:  # fmt: skip
        return bool(r.ping())


@pytest.fixture(scope="module")
def acl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Redis with ``user default off``, the user ``livekit``, and one key in database 2."""
    if SERVER is None:
        pytest.fail(MISSING)
    port = free_port()
    folder = tmp_path_factory.mktemp("redis-acl")
    server = _start(folder, [*_base(port), "--user", "default", "off", "--user", USER, "on",
                             f">{PASSWORD}", "~*", "&*", "+@all"], port,
                    lambda: _answers(port, USER, PASSWORD))  # fmt: skip
    with redis.Redis(host="127.0.0.1", port=port, username=USER, password=PASSWORD, db=DB) as r:
        r.set("livekit-room", "in-db-2")
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def acl_sentinel(acl_node: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Sentinel watching ``acl_node`` as ``livekit``, whose own default user is off."""
    folder = tmp_path_factory.mktemp("sentinel-acl")
    port = free_port()
    (folder / "sentinel.conf").write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {folder}",
        f"sentinel monitor lk 127.0.0.1 {acl_node.port} 1",
        f"sentinel auth-user lk {USER}", f"sentinel auth-pass lk {PASSWORD}",
        "user default off", f"user {SENTINEL_USER} on >{SENTINEL_PASSWORD} +@all",
    ]) + "\n")  # fmt: skip
    server = _start(folder, [str(folder / "sentinel.conf"), "--sentinel"], port,
                    lambda: _answers(port, SENTINEL_USER, SENTINEL_PASSWORD))  # fmt: skip
    yield server
    _stop(server)


def direct(node: Server, **changes: object) -> Settings:
    values: dict[str, object] = {"sentinel_addresses": (), "redis_address_map": {},
                                 "redis_primary_address": f"127.0.0.1:{node.port}",
                                 "redis_username": USER, "redis_password": PASSWORD,
                                 "redis_db": DB}  # fmt: skip
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def through(sentinel: Server, **changes: object) -> Settings:
    values: dict[str, object] = {"sentinel_addresses": (f"127.0.0.1:{sentinel.port}",),
                                 "sentinel_master": "lk", "redis_address_map": {},
                                 "redis_username": USER, "redis_password": PASSWORD,
                                 "redis_db": DB, "sentinel_username": SENTINEL_USER,
                                 "sentinel_password": SENTINEL_PASSWORD}  # fmt: skip
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


# --- the database ----------------------------------------------------------------------------


def test_every_data_connection_uses_livekits_database(acl_node: Server) -> None:
    with client.primary(direct(acl_node), decode=True) as r:
        assert r.get("livekit-room") == "in-db-2"
    with client.node(direct(acl_node), "127.0.0.1", acl_node.port) as r:
        assert r.get("livekit-room") == "in-db-2"
    with client.primary(direct(acl_node, redis_db=0), decode=True) as r:
        assert r.get("livekit-room") is None  # the default database holds none of it


def test_the_sentinels_get_no_database_and_their_own_user(acl_node: Server,
                                                          acl_sentinel: Server) -> None:
    # A Sentinel refuses SELECT: asking it with database 2 would fail.
    answers = client.ask_sentinels(through(acl_sentinel))
    assert [(a.host, a.port) for a in answers] == [("127.0.0.1", acl_node.port)]
    with client.primary(through(acl_sentinel), decode=True) as r:
        assert r.get("livekit-room") == "in-db-2"


# --- ACL users ---------------------------------------------------------------------------------


def test_the_acl_user_is_sent_and_named_when_refused(acl_node: Server) -> None:
    settings = direct(acl_node, redis_password="not-it",
                      redis_password_source="LKCHAOS_REDIS_PASSWORD")  # fmt: skip
    with pytest.raises(client.RedisAuthError) as caught:
        client.primary(settings)
    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{acl_node.port} refused user 'livekit'" in message
    assert "with the password from LKCHAOS_REDIS_PASSWORD" in message
    assert "either the user name" in message and "or the password is wrong" in message
    assert "LKCHAOS_REDIS_USERNAME" in message and "not-it" not in message


def test_the_default_user_refused_says_an_acl_user_may_be_wanted(acl_node: Server) -> None:
    settings = direct(acl_node, redis_username="",
                      redis_password_source="the target's redis.direct.password_ref (env P)")
    with pytest.raises(client.RedisAuthError) as caught:
        client.primary(settings)
    message = str(caught.value)
    assert "refused the default user (no user name set)" in message
    assert "with the password from the target's redis.direct.password_ref (env P)" in message
    assert "either that password is wrong, or the server wants an ACL user" in message
    assert "LKCHAOS_REDIS_USERNAME" in message


def test_no_password_for_a_user_says_so(acl_node: Server) -> None:
    with pytest.raises(client.RedisAuthError, match="wants a password for user 'livekit'"):
        client.primary(direct(acl_node, redis_password=""))


def test_a_refused_sentinel_user_names_the_sentinels_settings(acl_sentinel: Server) -> None:
    settings = through(acl_sentinel, sentinel_password="not-it",
                       sentinel_password_source="LKCHAOS_SENTINEL_PASSWORD")  # fmt: skip
    with pytest.raises(client.RedisAuthError) as caught:
        client.ask_sentinels(settings)
    message = str(caught.value)
    assert f"Sentinel at 127.0.0.1:{acl_sentinel.port} refused user 'watcher'" in message
    assert "the password from LKCHAOS_SENTINEL_PASSWORD" in message
    assert "LKCHAOS_SENTINEL_USERNAME" in message and "not-it" not in message


def test_sentinels_without_credentials_of_their_own_get_the_data_password() -> None:
    access = client.Access.of(Settings(redis_username="lk", redis_password="pw", redis_db=3))
    shared = access.sentinels()
    assert (shared.username, shared.password, shared.db) == ("", "pw", 0)
    assert shared.for_sentinels == "shared" and shared.sentinels() is shared
    own = client.Access.of(Settings(redis_password="pw", redis_db=3, sentinel_username="s",
                                    sentinel_password="spw")).sentinels()  # fmt: skip
    assert (own.username, own.password, own.db, own.for_sentinels) == ("s", "spw", 0, "own")
    kwargs = client.connect("r", 6379, access).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["db"]) == ("lk", 3)
    assert "spw" not in repr(client.Access.of(Settings(sentinel_password="spw")))


def test_an_unresolved_sentinel_reference_is_named(acl_sentinel: Server) -> None:
    settings = through(acl_sentinel, sentinel_password="",
                       sentinel_password_problem="env SENTINEL_PW is not set")  # fmt: skip
    with pytest.raises(client.RedisAuthError) as caught:
        client.ask_sentinels(settings)
    message = str(caught.value)
    assert "sentinel_password_ref did not resolve: env SENTINEL_PW is not set" in message
    assert "LKCHAOS_SENTINEL_PASSWORD" in message

