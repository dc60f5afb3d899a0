"""The cluster secret: the interceptor lets only calls carrying it reach the servicer, and the secret stays hidden."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshactors import cli, cluster_auth, flags
from meshactors.errors import ConfigError
from meshactors.runtime.deploy import with_cluster_secret
from meshactors.settings import MeshSettings
from meshactors.stubs import StubPool

SECRET = "s3cr3t-" + "x" * 40
KEY = cluster_auth.METADATA_KEY


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted(details)


class Details:
    def __init__(self, metadata: tuple[tuple[str, Any], ...], method: str = "/meshactors.v1.Registry/Register"):
        self.method = method
        self.invocation_metadata = metadata


class Servicer:
    """Records what reached it: nothing may, without the secret."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def register(self, request: Any, context: Any) -> str:
        self.calls.append(request)
        return "written"

    async def updates(self, request: Any, context: Any) -> Any:
        self.calls.append(request)
        yield "update"


def _continuation(servicer: Servicer, streaming: bool = False) -> Any:
    async def continuation(details: Any) -> grpc.RpcMethodHandler | None:
        if details.method.endswith("/Nope"):
            return None
        if streaming:
            return grpc.unary_stream_rpc_method_handler(servicer.updates)
        return grpc.unary_unary_rpc_method_handler(servicer.register)

    return continuation


async def test_a_call_with_the_secret_reaches_the_servicer() -> None:
    servicer = Servicer()
    interceptor = cluster_auth.ClusterSecretInterceptor(SECRET)
    handler = await interceptor.intercept_service(_continuation(servicer), Details((("other", "1"), (KEY, SECRET))))
    assert await handler.unary_unary(b"req", FakeContext()) == "written"
    assert servicer.calls == [b"req"] and interceptor.refused == 0


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("other", SECRET),),
        ((KEY, ""),),
        ((KEY, SECRET[:-1]),),
        ((KEY, SECRET + "y"),),
        ((KEY, "wrong-" + "x" * 41),),
        ((KEY, SECRET.upper()),),
        ((KEY, "é" * 47),),
    ],
    ids=["none", "other-key", "empty", "prefix", "longer", "wrong", "case", "non-ascii"],
)
async def test_a_call_without_the_right_secret_is_refused_and_reaches_nothing(metadata: Any) -> None:
    servicer = Servicer()
    interceptor = cluster_auth.ClusterSecretInterceptor(SECRET)
    handler = await interceptor.intercept_service(_continuation(servicer), Details(metadata))
    assert not handler.request_streaming and not handler.response_streaming
    assert handler.request_deserializer is None  # the request of a refused caller is not even parsed
    context = FakeContext()
    with pytest.raises(Aborted):
        await handler.unary_unary(b"req", context)
    assert context.aborted == (grpc.StatusCode.UNAUTHENTICATED, "internal API: missing or wrong cluster secret")
    assert servicer.calls == [] and interceptor.refused == 1


async def test_a_refused_stream_keeps_its_shape_and_an_unknown_method_is_refused_too() -> None:
    servicer = Servicer()
    interceptor = cluster_auth.ClusterSecretInterceptor(SECRET)
    stream = await interceptor.intercept_service(_continuation(servicer, streaming=True), Details(()))
    assert stream.response_streaming and not stream.request_streaming
    context = FakeContext()
    with pytest.raises(Aborted):
        await stream.unary_stream(b"req", context)
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.UNAUTHENTICATED
    unknown = await interceptor.intercept_service(_continuation(servicer), Details((), method="/x.Y/Nope"))
    with pytest.raises(Aborted):
        await unknown.unary_unary(b"req", FakeContext())
    assert servicer.calls == [] and interceptor.refused == 2
    # with the secret, the stream is the servicer's own
    ok = await interceptor.intercept_service(_continuation(servicer, streaming=True), Details(((KEY, SECRET),)))
    assert [u async for u in ok.unary_stream(b"req", FakeContext())] == ["update"]


def test_an_empty_secret_accepts_nothing_and_no_server_starts_without_a_good_one() -> None:
    assert not cluster_auth.accepts("", ((KEY, ""),))
    assert cluster_auth.accepts(SECRET, ((KEY, SECRET.encode()),))
    for bad in ("", "short", "x" * 31, "x" * 257, "has a space" + "x" * 30):
        with pytest.raises(ConfigError, match="cluster_secret: must be") as err:
            cluster_auth.ClusterSecretInterceptor(bad)
        assert not bad or bad not in str(err.value)


def test_new_secrets_are_valid_random_and_differ() -> None:
    made = {cluster_auth.new_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(cluster_auth.problem(s) is None for s in made)


def test_the_settings_never_show_the_secret() -> None:
    s = MeshSettings(etcd="http://e:2379", cluster_secret=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert "cluster_secret" not in repr(s)
    with pytest.raises(ConfigError, match="cluster_secret: must be printable ASCII") as err:
        MeshSettings(etcd="", cluster_secret="bad secret " + "x" * 40)
    assert "bad secret" not in str(err.value)


def test_deploy_generates_a_secret_once_and_keeps_one_it_is_given() -> None:
    made = with_cluster_secret(MeshSettings(etcd=""))
    assert cluster_auth.problem(made.cluster_secret) is None
    assert with_cluster_secret(made) is made
    given = MeshSettings(etcd="", cluster_secret=SECRET)
    assert with_cluster_secret(given).cluster_secret == SECRET


def test_every_internal_client_call_carries_the_secret() -> None:
    async def resolve(name: str) -> str:
        return name

    pool: StubPool[Any] = StubPool(resolve, lambda ch: ch, SECRET)
    assert cluster_auth.accepts(SECRET, pool.metadata)


# --- --cluster-secret-file ----------------------------------------------------------------------------------------


def _secret_file(tmp_path: Path, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_text(content)
    os.chmod(path, mode)
    return path


def _up(*argv: str) -> MeshSettings:
    return flags.mesh_settings(cli.build_parser().parse_args(["up", *argv]))


def test_the_secret_file_lands_in_the_settings(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, SECRET + "\n")
    assert _up("--cluster-secret-file", str(path)).cluster_secret == SECRET
    assert _up().cluster_secret == ""  # deploy generates one


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (SECRET, 0o644, "readable or writable by others (mode 0644); chmod 600 it"),
        (SECRET, 0o620, "readable or writable by others (mode 0620)"),
        ("tooshort-secret", 0o600, "must be 32 to 256 characters long (got 15)"),
        ("a secret with spaces in it, long enough", 0o600, "must be printable ASCII without spaces"),
        ("é" * 40, 0o600, "must be printable ASCII"),
        ("x" * 5000, 0o600, "larger than 4096 bytes"),
    ],
)
def test_a_bad_secret_file_names_the_flag_and_never_shows_the_content(
    tmp_path: Path, content: str, mode: int, reason: str
) -> None:
    path = _secret_file(tmp_path, content, mode)
    with pytest.raises(ConfigError, match="--cluster-secret-file: ") as err:
        _up("--cluster-secret-file", str(path))
    assert reason in str(err.value)
    assert content not in str(err.value)


def test_a_missing_secret_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--cluster-secret-file: cannot read .*No such file"):
        _up("--cluster-secret-file", str(tmp_path / "nope"))
