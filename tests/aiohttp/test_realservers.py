"""rstsafe.aiohttp against real servers with a 1 s keep-alive: nginx, uvicorn, gunicorn,
hypercorn and Node.js ``http.createServer`` (with and without its ``Keep-Alive`` header).

Requests are paced across the servers' timeout, where plain aiohttp meets closed
connections: rstsafe must show no error at all, and run every POST exactly once. A
second scenario holds each request between taking its connection from the pool and
writing it (a busy event loop does that), so that the server's close lands in between:
plain aiohttp fails there, every time, as in issue #14.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import pytest

import rstsafe.aiohttp
from realservers import RealServer, ServerFactory, free_port

pytestmark = [pytest.mark.realserver, pytest.mark.anyio]

NODE_SERVER = """\
// http.createServer with a 1 s keep-alive; logs "METHOD PATH" per executed request.
const http = require("http");
const fs = require("fs");
const port = Number(process.argv[2]);
const header = process.argv[3] !== "no-header";
const log = process.env.RSTSAFE_EXECUTION_LOG;
const server = http.createServer((req, res) => {
  req.on("data", () => {});
  req.on("end", () => {
    fs.appendFileSync(log, `${req.method} ${req.url}\\n`);
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": "3" });
    res.end("ok\\n");
  });
});
if (header) {
  server.keepAliveTimeout = 1000; // announces "Keep-Alive: timeout=1"
} else {
  // ALB-like: no header, the socket is closed after 1 s without traffic.
  server.keepAliveTimeout = 0;
  server.on("connection", (socket) => socket.setTimeout(1000, () => socket.destroy()));
}
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
"""

# Pauses across the 1 s timeout, the first long enough to see one idle close.
PAUSES: Sequence[float] = (1.5, 0.95, 1.0, 1.05, 0.3, 0.5, 1.2, 0.9, 1.0, 0.2)
# Servers whose idle close is timed to a few milliseconds (gunicorn's gthread worker
# closes idle connections between 1 and 2 s, so a fixed hold cannot straddle it), with
# the hold before the write that puts the close in between. Node 20 announces
# ``timeout=1`` but closes after 2 s (keepAliveTimeout plus its own second of grace).
HOLDS = {"nginx": 0.45, "uvicorn": 0.45, "hypercorn": 0.45, "node": 1.5, "node-no-header": 0.45}


@pytest.fixture
def start_node(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> ServerFactory:
    """Factory: ``start_node(header=True)``: Node's http server, 1 s keep-alive (skips if none)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (/usr/bin/node)")
    script = tmp_path / "rstsafe_node_server.js"
    script.write_text(NODE_SERVER)

    def start(header: bool = True) -> RealServer:
        port = free_port()
        argv = [node, str(script), str(port), "header" if header else "no-header"]
        return _real_servers("node", argv, port)

    return start


def _start(request: pytest.FixtureRequest, name: str) -> RealServer:
    if name.startswith("node"):
        node: ServerFactory = request.getfixturevalue("start_node")
        return node(header=name == "node")
    factory: ServerFactory = request.getfixturevalue(f"start_{name}")
    if name == "nginx":
        return factory(keepalive="1s")
    if name == "uvicorn":
        return factory(timeout_keep_alive=1)
    if name == "gunicorn":
        return factory(keepalive=1)
    return factory(keep_alive_timeout=1)


async def _run(
    session: aiohttp.ClientSession,
    server: RealServer,
    pauses: Sequence[float],
    *,
    hold: float = 0.0,
) -> list[object]:
    """GET, POST, GET ... after each pause; the status of each, or the exception."""
    outcomes: list[object] = []
    for index, pause in enumerate(pauses):
        await asyncio.sleep(pause)
        method = "GET" if index % 2 == 0 else "POST"
        context = {"delay": hold} if hold else None
        try:
            async with session.request(
                method,
                f"{server.url}/r/{index}",
                data=b"1" if method == "POST" else None,
                trace_request_ctx=context,
            ) as response:
                await response.read()
                outcomes.append(response.status)
        except aiohttp.ClientError as exc:
            outcomes.append(exc)
    return outcomes


async def _executions(server: RealServer, count: int) -> None:
    # nginx writes its access log after the response: allow it a moment.
    for _ in range(200):
        if server.executions() >= count:
            return
        await asyncio.sleep(0.05)


def _posts_once(server: RealServer, pauses: Sequence[float]) -> bool:
    return all(server.executions("POST", f"/r/{i}") == 1 for i in range(1, len(pauses), 2))


@pytest.mark.usefixtures("retries_available")
@pytest.mark.parametrize(
    "name", ["nginx", "uvicorn", "gunicorn", "hypercorn", "node", "node-no-header"]
)
async def test_paced_across_the_keepalive(request: pytest.FixtureRequest, name: str) -> None:
    """No error for GETs and POSTs paced across the server's 1 s timeout; each POST runs once."""
    server = _start(request, name)
    async with rstsafe.aiohttp.ClientSession() as session:
        outcomes = await _run(session, server, PAUSES)
    assert outcomes == [200] * len(PAUSES)
    await _executions(server, len(PAUSES))
    assert _posts_once(server, PAUSES)


@pytest.mark.usefixtures("retries_available")
@pytest.mark.parametrize("name", list(HOLDS))
async def test_held_request_meets_the_close(
    request: pytest.FixtureRequest, name: str, slow_client: aiohttp.TraceConfig
) -> None:
    """Reused at 0.8 s idle, held past the server's close before the write: plain fails."""
    pauses = (0.0, *([0.8] * 5))
    hold = HOLDS[name]
    plain_server = _start(request, name)
    async with aiohttp.ClientSession(trace_configs=[slow_client]) as plain:
        plain_outcomes = await _run(plain, plain_server, pauses, hold=hold)
    safe_server = _start(request, name)
    async with rstsafe.aiohttp.ClientSession(trace_configs=[slow_client]) as safe:
        safe_outcomes = await _run(safe, safe_server, pauses, hold=hold)
    plain_errors = [o for o in plain_outcomes if isinstance(o, Exception)]
    assert plain_errors, plain_outcomes
    assert all(isinstance(e, aiohttp.ClientConnectionError) for e in plain_errors)
    assert safe_outcomes == [200] * len(pauses)
    await _executions(safe_server, len(pauses))
    assert _posts_once(safe_server, pauses)
