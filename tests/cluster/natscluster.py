"""Private ``nats-server`` processes for the cluster tests, and a TCP proxy that can cut one client off.

:class:`NatsCluster` starts 1 server with JetStream, or 3 servers clustered by routes, on free loopback ports,
each with its store under the test's ``tmp_path`` and a configuration file of its own
(https://docs.nats.io/running-a-nats-service/configuration/clustering/jetstream_clustering: ``server_name``,
``jetstream { store_dir }``, ``cluster { name, listen, routes }``). It is ready when every server logged
``Server is ready`` and JetStream answers ``account_info`` (for 3 servers: once a metadata leader is elected,
logged as ``... metadata leader``). :meth:`NatsCluster.kill` kills one server (SIGKILL),
:meth:`NatsCluster.restart` starts it again on its ports and store; :meth:`NatsCluster.aclose` always ends
every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors

READY_LINE = "Server is ready"
META_LEADER_LINE = "metadata leader"
START_TIMEOUT_S = 15.0
LOG_LINES_KEPT = 200


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (bound to port 0, read, released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    """One server: its ports, files, process and the last lines it logged."""

    name: str
    port: int
    cluster_port: int | None
    store_dir: Path
    conf: Path
    proc: asyncio.subprocess.Process | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    meta_leader: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class NatsCluster:
    """``size`` (1 or 3) private nats-servers; see the module docstring."""

    def __init__(self, tmp_path: Path, size: int = 1) -> None:
        if size not in (1, 3):
            raise ValueError("size is 1 or 3")
        self.size = size
        self.name = f"cl{uuid.uuid4().hex[:8]}"
        ports = free_ports(2 * size)
        self.nodes: list[Node] = []
        for i in range(size):
            store = tmp_path / f"n{i}" / "js"
            store.mkdir(parents=True)
            self.nodes.append(
                Node(
                    name=f"n{i}",
                    port=ports[2 * i],
                    cluster_port=ports[2 * i + 1] if size > 1 else None,
                    store_dir=store,
                    conf=tmp_path / f"n{i}" / "server.conf",
                )
            )
        for node in self.nodes:
            node.conf.write_text(self._conf(node))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _conf(self, node: Node) -> str:
        lines = [
            f"server_name: {node.name}",
            f"listen: 127.0.0.1:{node.port}",
            f'jetstream {{ store_dir: "{node.store_dir}" }}',
        ]
        if node.cluster_port is not None:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{other.cluster_port}" for other in self.nodes if other is not node
            )
            lines.append(
                f"cluster {{ name: {self.name}, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    async def _read(self, node: Node, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            node.lines.append(text)
            if READY_LINE in text:
                node.ready.set()
            if META_LEADER_LINE in text:
                node.meta_leader.set()

    async def _spawn(self, node: Node) -> None:
        node.ready = asyncio.Event()
        node.meta_leader = asyncio.Event()
        node.proc = await asyncio.create_subprocess_exec(
            "nats-server",
            "-c",
            str(node.conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        node.reader = asyncio.get_running_loop().create_task(self._read(node, node.proc))

    async def start(self) -> None:
        """Start every server and wait until JetStream answers (:data:`START_TIMEOUT_S` at most)."""
        for node in self.nodes:
            await self._spawn(node)
        await self.wait_ready(self.nodes)

    async def wait_ready(self, nodes: list[Node]) -> None:
        """Wait until ``nodes`` logged readiness (and, for a cluster, a metadata leader), then until JetStream
        answers through each of them."""

        async def ready() -> None:
            await asyncio.gather(*(n.ready.wait() for n in nodes))
            if self.size > 1:
                await asyncio.gather(*(n.meta_leader.wait() for n in nodes))
            for node in nodes:
                await self._js_answers(node)

        try:
            await asyncio.wait_for(ready(), START_TIMEOUT_S)
        except TimeoutError:
            logs = "\n".join(f"{n.name}: {line}" for n in nodes for line in list(n.lines)[-20:])
            raise RuntimeError(f"nats-server did not become ready; last log lines:\n{logs}") from None

    @staticmethod
    async def _js_answers(node: Node) -> None:
        """One client on ``node``: ``account_info`` until it answers (each attempt waits for its own 1 s
        request timeout, so the attempts are paced by the server, not by a sleep)."""
        nc = await nats.connect(node.url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=1.0)
            while True:
                try:
                    await js.account_info()
                    return
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    continue
        finally:
            await nc.close()

    def node_of(self, port: int) -> Node:
        """The node listening on client ``port``."""
        return next(n for n in self.nodes if n.port == port)

    async def kill(self, node: Node) -> None:
        """SIGKILL ``node`` and wait for its exit."""
        proc, node.proc = node.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if node.reader is not None:
            await asyncio.wait({node.reader})

    async def restart(self, node: Node) -> None:
        """Start ``node`` again (same ports, same store) and wait until it is ready."""
        await self.kill(node)
        await self._spawn(node)
        await self.wait_ready([node])

    async def aclose(self) -> None:
        """End every process (SIGTERM, then SIGKILL after 5 s)."""
        for node in self.nodes:
            proc, node.proc = node.proc, None
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if node.reader is not None:
                await asyncio.wait({node.reader})


@contextlib.asynccontextmanager
async def nats_cluster(tmp_path: Path, size: int = 1) -> AsyncIterator[NatsCluster]:
    """A started :class:`NatsCluster`, always closed."""
    cluster = NatsCluster(tmp_path, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.aclose()


class TcpProxy:
    """Forwards a loopback port to ``target``; :meth:`cut` closes every forwarded connection and stops listening
    (the client sees NATS unreachable), :meth:`restore` listens again on the same port."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        """Stop listening and close every forwarded connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        self._tasks.clear()

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def aclose(self) -> None:
        await self.cut()
