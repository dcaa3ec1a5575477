"""The private aiohttp touch points of rstsafe.aiohttp still behave as read (see _compat/aiohttp).

Each test fails loudly, naming the touch point, when an aiohttp release changes it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.client_reqrep import ClientRequest
from yarl import URL

import rstsafe.aiohttp
from rstsafe._compat import aiohttp as compat

pytestmark = pytest.mark.anyio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server answering every request with 200; yields its URL and the bytes read."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                received.append(data)
                if b"\r\n\r\n" in data:
                    writer.write(RESPONSE)
                    await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


def test_the_checks_pass_on_this_aiohttp() -> None:
    """``check()`` (run when rstsafe.aiohttp is imported) finds every touch point."""
    compat.check()
    assert compat.AIOHTTP_VERSION >= (3, 10)


def test_middlewares_flag_matches_the_session_signature() -> None:
    """HAS_MIDDLEWARES is True exactly when ClientSession takes ``middlewares=``."""
    parameters = inspect.signature(aiohttp.ClientSession.__init__).parameters
    assert ("middlewares" in parameters) == compat.HAS_MIDDLEWARES


def test_every_request_method_is_overridden() -> None:
    """Each public session method that starts a request keeps rstsafe's middleware.

    rstsafe overrides them to append its middleware to a request's own
    ``middlewares=``; a method aiohttp adds must be added there too.
    """
    starting = {
        name
        for name, member in vars(aiohttp.ClientSession).items()
        if not name.startswith("_")
        and callable(member)
        and "self._request(" in inspect.getsource(member)
    }
    assert starting == {"request", "get", "options", "head", "post", "put", "patch", "delete"}
    for name in starting:
        assert name in vars(rstsafe.aiohttp.ClientSession), name


def _request(method: str, url: str, data: bytes | None = None) -> ClientRequest:
    return ClientRequest(method, URL(url), data=data, loop=asyncio.get_running_loop())


async def test_request_bytes_are_written_through_the_protocols_transport(
    raw_server: tuple[str, list[bytes]],
) -> None:
    """Touch point 1: the counting proxy on ``protocol.transport`` sees every request byte."""
    url, received = raw_server
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        request = _request("POST", url + "/p", data=b"x" * 1000)
        conn = await connector.connect(request, [], aiohttp.ClientTimeout(total=5))
        assert conn.protocol is not None
        tracked = compat.transport_of(conn.protocol)
        assert type(tracked).__name__ == "_Tracked"
        conn.protocol.set_response_params()
        response = await request.send(conn)
        await response.start(conn)
        assert await response.read() == b"ok"
        assert tracked.life.bytes_sent == sum(len(chunk) for chunk in received)
        assert tracked.life.bytes_sent > 1000
        response.release()
        await request.close()
    finally:
        await connector.close()


async def test_a_write_on_a_closing_transport_is_refused_before_the_transport(
    raw_server: tuple[str, list[bytes]],
) -> None:
    """Touch point 1: aiohttp refuses a write when the transport is closing; nothing counted."""
    url, received = raw_server
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        request = _request("GET", url + "/g")
        conn = await connector.connect(request, [], aiohttp.ClientTimeout(total=5))
        assert conn.protocol is not None
        tracked = compat.transport_of(conn.protocol)
        tracked.inner.close()  # closing, as after the server's FIN
        with pytest.raises(aiohttp.ClientConnectionResetError):
            await request.send(conn)
        assert tracked.life.bytes_sent == 0
        assert received == []
        conn.close()
    finally:
        await connector.close()


async def test_closed_future_exists_from_312() -> None:
    """Touch point 2: ``ResponseHandler.closed`` is a future from aiohttp 3.12 on."""
    protocol = aiohttp.client_proto.ResponseHandler(asyncio.get_running_loop())
    future = compat.closed_future(protocol)
    if compat.AIOHTTP_VERSION >= (3, 12):
        assert isinstance(future, asyncio.Future)
        protocol.connection_lost(None)
        assert future.done()
    else:
        assert future is None


def test_subclassing_the_session_is_quiet_and_its_attribute_allowed() -> None:
    """Touch point 3: rstsafe's session imported without warnings; its attribute in ATTRS."""
    assert "_rstsafe" in rstsafe.aiohttp.ClientSession.ATTRS
    assert aiohttp.ClientSession.ATTRS <= rstsafe.aiohttp.ClientSession.ATTRS
    with pytest.warns(DeprecationWarning, match="Inheritance class"):

        class Loud(aiohttp.ClientSession):
            pass

    assert issubclass(Loud, aiohttp.ClientSession)


@pytest.mark.parametrize("give_back", ["release", "close"])
async def test_release_and_close_give_the_connection_back_through_release(
    raw_server: tuple[str, list[bytes]], give_back: str
) -> None:
    """Touch point 4: a connection's release() and close() call _release: the idle clock starts."""
    url, _ = raw_server
    signature = inspect.signature(aiohttp.BaseConnector._release)
    assert list(signature.parameters)[:3] == ["self", "key", "protocol"]
    assert signature.parameters["should_close"].kind is inspect.Parameter.KEYWORD_ONLY
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        request = _request("GET", url + "/g")
        conn = await connector.connect(request, [], aiohttp.ClientTimeout(total=5))
        assert conn.protocol is not None
        tracked = compat.transport_of(conn.protocol)
        assert tracked.in_use
        assert tracked.life.requests_served == 0
        before = time.monotonic()
        getattr(conn, give_back)()
        assert not tracked.in_use
        assert tracked.life.requests_served == 1
        assert before <= tracked.life.last_used_at <= time.monotonic()
        await request.close()
    finally:
        await connector.close()
