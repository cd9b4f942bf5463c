"""What ``cryptolink status`` shows: one instance's ``/api/system/status`` (over HTTP) or every instance in
Redis, as rich tables, and the exit code that goes with it.

One row per connection: entry, connection id, status (coloured as the dashboard), quality score, latency
(ms), messages, messages per second, reconnect attempts, books live/total and the last error; above it a
header line with the instance, its health, CPU, memory and disk.

Exit codes: :data:`EXIT_HEALTHY` (0) every running instance shown is healthy (instances ``stopped`` cleanly are
listed, not counted); :data:`EXIT_UNHEALTHY` (1) one is not, one is ``unknown`` (its snapshot expired in
Redis) or shares its instance id with another process, or Redis lists no running one;
:data:`EXIT_UNREACHABLE` (2) the endpoint or Redis cannot be read (:class:`View.error` says why in one line).

Every value shown comes from the instances or from Redis, so it is drawn as plain text, never as rich markup
(an exchange error reading ``[/ws/v5/public]`` is shown as is), with control characters made visible. No
message carries the bearer token or the password of a URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cryptolink.redact import redact_url, scrub, url_secrets
from cryptolink.status.cluster import ClusterStatus

__all__ = [
    "DEFAULT_URL",
    "EXIT_HEALTHY",
    "EXIT_UNHEALTHY",
    "EXIT_UNREACHABLE",
    "HTTP_TIMEOUT_S",
    "View",
    "cluster_code",
    "cluster_view",
    "instance_code",
    "instance_view",
    "load_cluster",
    "load_instance",
    "watch",
]

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 2

DEFAULT_URL = "http://127.0.0.1:8766"
"""The status API of a local ``cryptolink run`` with the default ``status`` section."""

HTTP_TIMEOUT_S = 5.0
"""Timeout of the ``/api/system/status`` request, s."""

MAX_REASONS = 10
"""Unhealthy reasons listed under an instance's table (the rest are counted)."""

_RICH_COLOR = {"green": "green", "red": "red", "yellow": "yellow", "orange": "dark_orange", "gray": "grey50"}


@dataclass(frozen=True, slots=True)
class View:
    """One look at the status: what to print and the exit code.

    Attributes:
        renderable: the tables (or the error line when ``error`` is set).
        code: :data:`EXIT_HEALTHY`, :data:`EXIT_UNHEALTHY` or :data:`EXIT_UNREACHABLE`.
        error: why the status could not be read (one line), ``None`` when it was.
    """

    renderable: RenderableType
    code: int
    error: str | None = None


def _unreachable(message: str) -> View:
    return View(_plain(f"error: {message}", "bold red"), EXIT_UNREACHABLE, message)


def _visible(value: str) -> str:
    """``value`` with control characters (escape sequences, carriage returns...) written as ``\\xNN``."""
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in value)


def _header_safe(token: str) -> bool:
    """Printable ASCII (space to ``~``): what an HTTP header value can carry as is."""
    return all(" " <= ch <= "~" for ch in token)


def _spellings(secret: str | None) -> list[str]:
    """``secret`` as an error message may quote it: raw, and escaped as a str or bytes repr does."""
    if not secret:
        return []
    return [secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "backslashreplace"))[2:-1]]


def _plain(value: object, style: str = "") -> Text:
    """A data value as plain text: never parsed as markup, control characters made visible."""
    return Text(_visible(str(value)), style=style)


# ------------------------------------------------------------------------------------------------ loading
def load_instance(url: str, token: str | None = None, *, timeout_s: float = HTTP_TIMEOUT_S) -> View:
    """GET ``<url>/api/system/status`` (with ``Authorization: Bearer <token>`` when given) and render it.

    Never raises on a network or protocol failure: the view then has :data:`EXIT_UNREACHABLE` and ``error``
    (the URL's password and the token replaced by ``***``).
    """
    endpoint = url.rstrip("/") + "/api/system/status"
    shown = redact_url(endpoint)
    if token and not _header_safe(token):
        return _unreachable(
            "the token holds control or non-ASCII characters; a bearer token is printable ASCII"
        )
    secrets = url_secrets(endpoint) + _spellings(token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # user info goes in httpx's auth, never in the URL it logs (httpx logs every request's URL at INFO)
    parts = urlsplit(endpoint)
    auth: tuple[str, str] | None = None
    if parts.username is not None or parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        endpoint = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    try:
        response = httpx.get(endpoint, headers=headers, auth=auth, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return _unreachable(scrub(f"cannot reach {shown}: {type(exc).__name__}: {exc}", secrets))
    if response.status_code == 401:
        return _unreachable(
            f"{shown} answered 401: missing or wrong token (--token or CRYPTOLINK__STATUS__TOKEN)"
        )
    if response.status_code not in (200, 503):
        return _unreachable(f"{shown} answered HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("exchange_connections"), dict):
        return _unreachable(f"{shown} did not answer a cryptolink status document")
    return View(instance_view(doc), instance_code(doc))


def load_cluster(redis_url: str, prefix: str) -> View:
    """Read every instance under ``prefix`` from Redis (:class:`~cryptolink.status.cluster.ClusterStatus`)
    and render them. Never raises on a Redis failure (:data:`EXIT_UNREACHABLE` with ``error``)."""

    async def read() -> dict[str, Any]:
        reader = ClusterStatus(redis_url, prefix=prefix, log_failures=False)
        try:
            return await reader.read()
        finally:
            await reader.aclose()

    doc = asyncio.run(read())
    if "error" in doc:
        return _unreachable(f"cannot read Redis {doc['redis']}: {doc['error']}")
    return View(cluster_view(doc), cluster_code(doc))


# ------------------------------------------------------------------------------------------- exit codes
def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    return _section(_section(status, "exchange_connections"), "summary")


def _healthy(status: dict[str, Any]) -> bool:
    return _summary(status).get("healthy") is True


def instance_code(doc: dict[str, Any]) -> int:
    """0 when the ``/api/system/status`` document says healthy, else 1."""
    return EXIT_HEALTHY if _healthy(doc) else EXIT_UNHEALTHY


def cluster_code(doc: dict[str, Any]) -> int:
    """0 when Redis lists at least one running instance (not ``stopped``) and every running one is live and
    healthy (no collision), else 1 (2 for an error document). Instances stopped cleanly are ignored."""
    if "error" in doc:
        return EXIT_UNREACHABLE
    running = [i for i in doc.get("instances") or [] if i.get("state") != "stopped"]
    if running and all(i.get("healthy") is True for i in running):
        return EXIT_HEALTHY
    return EXIT_UNHEALTHY


# ------------------------------------------------------------------------------------------------ views
def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _connections_table(connections: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("entry", overflow="fold")
    table.add_column("connection", overflow="fold")
    table.add_column("status", min_width=12, overflow="fold")
    table.add_column("quality", justify="right")
    table.add_column("latency ms", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("msg/s", justify="right")
    table.add_column("reconnects", justify="right")
    table.add_column("books", justify="right")
    table.add_column("last error", overflow="fold")
    for c in connections:
        status = str(c.get("status", "?"))
        colour = _RICH_COLOR.get(str(c.get("status_color")), "white")
        label = f"{status} (unstable)" if c.get("unstable") else status
        books = c.get("books") or {}
        if not isinstance(books, dict):
            books = {}
        table.add_row(  # every cell a Text: data is never parsed as markup
            _plain(c.get("exchange_name", "-")),
            _plain(c.get("connection_id", "-")),
            _plain(label, colour),
            _plain(_num(c.get("quality_score"))),
            _plain(_num(c.get("latency_ms"), 2)),
            _plain(_num(c.get("message_count"))),
            _plain(_num(c.get("messages_per_s"))),
            _plain(_num(c.get("reconnect_count"))),
            _plain(f"{books.get('live', 0)}/{books.get('total', 0)}"),
            _plain(c.get("last_error") or ""),
        )
    return table


def _header(status: dict[str, Any]) -> Text:
    healthy = _healthy(status)
    text = Text()  # Text.append takes plain strings (no markup); _visible shows control characters
    text.append(_visible(str(status.get("instance_id", "?"))), style="bold")
    text.append("  healthy: ")
    text.append("yes" if healthy else "NO", style="green" if healthy else "bold red")
    text.append(_visible(f"  cpu {_num(status.get('cpu_usage'))}%"))
    memory = f"  memory {status.get('memory_usage', '-')} ({_num(status.get('memory_usage_percent'))}%)"
    text.append(_visible(memory))
    text.append(
        _visible(f"  disk {status.get('disk_space', '-')} ({_num(status.get('disk_space_percent'))}%)")
    )
    if status.get("timestamp"):
        text.append(_visible(f"  at {status['timestamp']}"), style="dim")
    return text


def _reasons(status: dict[str, Any]) -> Text | None:
    reasons = _summary(status).get("unhealthy_reasons") or []
    if not reasons:
        return None
    shown = [f"  - {_visible(str(r))}" for r in reasons[:MAX_REASONS]]
    if len(reasons) > MAX_REASONS:
        shown.append(f"  ... and {len(reasons) - MAX_REASONS} more")
    return Text("unhealthy:\n" + "\n".join(shown), style="red")


def _rest_line(status: dict[str, Any]) -> Text | None:
    """``rest: 3 members (healthy 2, offline 1), 2 groups, 4 budgets, 1 in fallback`` from the ``rest`` extra of
    the status document; ``None`` when the instance has none (no REST manager members and no budgets)."""
    rest = status.get("rest")
    if not isinstance(rest, dict) or not (rest.get("members") or rest.get("budgets")):
        return None
    raw = rest.get("states")
    states: dict[str, Any] = raw if isinstance(raw, dict) else {}
    shown = ", ".join(f"{_visible(str(k))} {v}" for k, v in states.items() if v)
    line = Text("rest: ")
    line.append(_visible(f"{rest.get('members', 0)} members"))
    if shown:
        line.append(f" ({shown})")
    line.append(_visible(f", {rest.get('groups', 0)} groups, {rest.get('budgets', 0)} budgets"))
    fallback = rest.get("budgets_fallback") or 0
    if fallback:
        line.append(_visible(f", {fallback} in fallback (Redis unreachable)"), style="bold red")
    if any(isinstance(v, int) and v > 0 for k, v in states.items() if k in ("offline", "maintenance")):
        line.stylize("yellow")
    return line


def _nats_line(status: dict[str, Any]) -> Text | None:
    """``nats: connected, 9,709 acked (1,000 duplicates), 0 lost, 12 buffered`` from the ``nats`` extra (the NATS
    sink); ``None`` without a sink."""
    nats = status.get("nats")
    if not isinstance(nats, dict):
        return None
    connected = nats.get("connected") is True
    line = Text("nats: ")
    line.append("connected" if connected else "NOT CONNECTED", style="" if connected else "bold red")
    line.append(
        _visible(
            f", {nats.get('acked', 0):,} acked ({nats.get('duplicates', 0):,} duplicates), "
            f"{nats.get('buffered', 0):,} buffered, {nats.get('in_flight', 0):,} in flight"
        )
    )
    lost = nats.get("lost") or 0
    line.append(_visible(f", {lost:,} lost"), style="bold red" if lost else "")
    return line


def _worker_line(status: dict[str, Any]) -> Text | None:
    """``worker w1 (active): 2 of 6 slots held (target 2; 3 workers): binance#0, okx#1; 0 leases lost`` from the
    ``worker`` extra; ``None`` when the instance is not a cluster worker."""
    w = status.get("worker")
    if not isinstance(w, dict):
        return None
    raw = w.get("held")
    held = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
    names = ", ".join(_visible(f"{h.get('shard')}#{h.get('replica')}") for h in held) or "none"
    seen = w.get("workers_seen")
    line = Text(
        _visible(
            f"worker {w.get('worker_id')} ({w.get('state')}): {len(held)} of {w.get('slots', 0)} slots held "
            f"(target {w.get('target', 0)}; {len(seen) if isinstance(seen, list) else 0} workers): {names}; "
            f"{w.get('leases_lost', 0)} leases lost"
        )
    )
    mismatch = w.get("config_mismatch")
    if isinstance(mismatch, list) and mismatch:
        line.append(_visible(f"; ANOTHER CONFIGURATION: {', '.join(map(str, mismatch))}"), style="bold red")
    if w.get("state") == "fenced":
        line.stylize("bold red")
    return line


def instance_view(status: dict[str, Any]) -> RenderableType:
    """One instance: header line, connection table, the REST manager's line (when it has members or budgets)
    and (when unhealthy) the reasons."""
    parts: list[RenderableType] = [_header(status)]
    parts.append(_connections_table(_section(status, "exchange_connections").get("connections") or []))
    for line in (_rest_line(status), _nats_line(status), _worker_line(status)):
        if line is not None:
            parts.append(line)
    reasons = _reasons(status)
    if reasons is not None:
        parts.append(reasons)
    return Group(*parts)


_COLLISION = "COLLISION: two processes write this instance id (give each its own status.instance_id)"


def _instance_line(inst: dict[str, Any]) -> Text:
    """A stopped instance (dim ``STOPPED`` and when) or an unknown one (red ``UNKNOWN``, last seen)."""
    line = Text()
    line.append(_visible(str(inst.get("instance_id", "?"))), style="bold")
    if inst.get("state") == "stopped":
        line.append("  STOPPED", style="dim")
        line.append(_visible(f"  at {inst.get('stopped_at') or inst.get('last_seen', '-')}"), style="dim")
    else:
        line.append("  UNKNOWN", style="bold red")
        line.append(_visible(f"  last seen {inst.get('last_seen', '-')} ({_num(inst.get('age_s'))} s ago)"))
    if inst.get("error"):
        line.append(_visible(f"  {inst['error']}"), style="red")
    return line


def cluster_view(doc: dict[str, Any]) -> RenderableType:
    """Every instance of a :meth:`ClusterStatus.read` document: a live one as :func:`instance_view` (with a
    red ``COLLISION`` line when two processes write its id), a stopped one as a dim ``STOPPED`` line, an
    unknown one as a red ``UNKNOWN`` line with its last-seen time; then a summary line."""
    parts: list[RenderableType] = []
    for inst in doc.get("instances") or []:
        status = inst.get("status")
        if inst.get("state") == "live" and isinstance(status, dict):
            parts.append(instance_view(status))
        else:
            parts.append(_instance_line(inst))
        if inst.get("collision"):
            parts.append(Text(_COLLISION, style="bold red"))
        parts.append(Text(""))
    summary = doc.get("summary") or {}
    total = int(summary.get("instances", 0))
    line = Text(_visible(f"Redis {doc.get('redis')} prefix {doc.get('prefix')!r}: "))
    line.append(f"{total} instance(s), {summary.get('live', 0)} live, ")
    unknown = int(summary.get("unknown", 0))
    line.append(f"{unknown} unknown", style="bold red" if unknown else "")
    line.append(f", {summary.get('stopped', 0)} stopped, {summary.get('healthy', 0)} healthy")
    collisions = int(summary.get("collisions", 0))
    if collisions:
        line.append(f", {collisions} collision(s)", style="bold red")
    if summary.get("omitted"):
        line.append(f" ({summary['omitted']} more not read)")
    if total == 0:
        line.append(" (no instance publishes under this prefix)", style="bold red")
    elif total == int(summary.get("stopped", 0)):
        line.append(" (every instance is stopped)", style="bold red")
    parts.append(line)
    return Group(*parts)


# ------------------------------------------------------------------------------------------------ watch
def _frame(view: View, interval_s: float) -> RenderableType:
    stamp = datetime.now().strftime("%H:%M:%S")
    footer = Text(f"updated {stamp}; refreshing every {interval_s:g} s; Ctrl-C to stop", style="dim")
    return Group(view.renderable, footer)


def watch(
    load: Callable[[], View],
    interval_s: float,
    console: Console,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show ``load()`` and refresh it every ``interval_s`` seconds in place (rich live display) until Ctrl-C
    (:class:`KeyboardInterrupt`); an unreachable endpoint is shown and retried, not fatal.

    Returns:
        The exit code of the last view shown.
    """
    view = load()
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            live.update(_frame(view, interval_s), refresh=True)
            while True:
                sleep(interval_s)
                view = load()
                live.update(_frame(view, interval_s), refresh=True)
    except KeyboardInterrupt:
        pass
    return view.code
