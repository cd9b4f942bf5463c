"""The ``cryptolink`` command line (typer).

Commands::

    cryptolink [--version]
    cryptolink demo [--duration SECONDS] [--out DIR] [--no-faults] [--status-addr HOST:PORT | --no-status]
                    [--nats URL ...]
    cryptolink run CONFIG.yaml [--status-addr HOST:PORT | --no-status] [--log-format json|console] [--watch]
    cryptolink record CONFIG.yaml --out FILE [--duration SECONDS]
    cryptolink simulate [--exchange binance|binanceusdm|okx|binancecoinm ...] [--host 127.0.0.1] [--port N]
                        [--mode replay|synthetic] [--speed X] [--faults SPEC] [--seed N]
                        [--rest-limit EXCHANGE=WEIGHT/SECONDS ...] [--replay FILE]
    cryptolink status [--url URL | --redis URL] [--token TOKEN] [--prefix P] [--watch SECONDS]
    cryptolink tail SUBJECT [--server URL ...] [--from-start | --last N] [--json] [--count N] [--creds FILE]
                    [--token TOKEN] [--connect-timeout SECONDS]
    cryptolink validate-config CONFIG.yaml
    cryptolink version

Exit codes: 0 success (also after a stop signal on ``run`` and ``simulate``), 1 runtime failure, data lost
(JSONL lines that could not be written) or a component missing from this build, 2 bad configuration or
arguments, an unwritable output directory or a symbol the exchange does not list (refused at start), 130
interrupted (``demo``); ``status``: 0 healthy (stopped instances ignored), 1 unhealthy, an instance unknown or every instance stopped, 2
unreachable or a bad argument; ``tail``: 0 (also after Ctrl-C), 2 for a bad argument, an unreachable server or
no stream holding the subject. The heavy parts are imported inside each command, so ``--help``, ``--version`` and
``validate-config`` start fast and work on their own.
"""

from __future__ import annotations

import asyncio
import importlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from pydantic import ValidationError

from cryptolink import __version__
from cryptolink.config import (
    ConfigError,
    CryptolinkConfig,
    NatsConfig,
    StatusConfig,
    load_config,
    status_from_env,
)

__all__ = ["app", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_CONFIG = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="cryptolink",
    help="Healthy, gap-free crypto exchange market-data connections, and a loopback exchange simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no type column (no "<bool>" next to every flag)
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cryptolink {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Healthy, gap-free crypto exchange market-data connections, and a loopback exchange simulator."""


class LogFormat(StrEnum):
    """How log lines are written."""

    JSON = "json"
    CONSOLE = "console"


class SimMode(StrEnum):
    """Where the simulator's market data comes from."""

    REPLAY = "replay"
    SYNTHETIC = "synthetic"


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _lazy(module: str, name: str) -> Any:
    """Import ``module.name`` at call time; a missing component is a clear error (exit 1), not a traceback."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        _fail(f"error: {module}.{name} is not available in this build ({exc})", EXIT_FAILURE)


def _load(path: Path) -> CryptolinkConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)


def _setup_logging(
    level: str, mode: Literal["json", "console"], config: CryptolinkConfig | None = None
) -> None:
    """Send every log record to stderr through structlog (:mod:`cryptolink.logs`): one JSON object per line
    (``json``) or readable lines (``console``); the secrets of ``config`` are written as ``***``."""
    from cryptolink.logs import config_secrets, configure_logging

    configure_logging(mode, level, secrets=config_secrets(config) if config is not None else ())


def _parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8766`` for IPv6) -> ``(host, port)``; exit 2 on a malformed address."""
    host, sep, port = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        _fail(f"error: --status-addr {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:8766", EXIT_BAD_CONFIG)
    return host, int(port)


def _status_config(base: StatusConfig, addr: str | None, off: bool) -> StatusConfig:
    """``base`` with ``--status-addr`` / ``--no-status`` applied and validated again. An explicit
    ``--status-addr`` serves the API even when the configuration says ``enabled: false``; a non-loopback address
    without a token, or both options at once, are refused (exit 2)."""
    if off and addr is not None:
        _fail("error: --status-addr and --no-status contradict each other; give one of them", EXIT_BAD_CONFIG)
    if off:
        return base.model_copy(update={"enabled": False})
    if addr is None:
        return base
    host, port = _parse_addr(addr)
    try:
        return StatusConfig.model_validate({**base.model_dump(), "host": host, "port": port, "enabled": True})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        _fail(f"error: --status-addr {addr}: {problems}", EXIT_BAD_CONFIG)


_STATUS_ADDR_HELP = (
    "Serve the status API, dashboard and /metrics on HOST:PORT (default 127.0.0.1:8766; "
    "off loopback a token is required: status.token or CRYPTOLINK__STATUS__TOKEN)."
)
_RUN_STATUS_ADDR_HELP = (
    _STATUS_ADDR_HELP + " Given, it serves the API even when the configuration says status.enabled: false."
)
_NO_STATUS_HELP = (
    "Do not serve the status API (the periodic connection report and the Redis status still run)."
)


@app.command()
def demo(
    duration: Annotated[
        float,
        typer.Option("--duration", min=0.0, help="Stop after this many seconds; 0 runs until Ctrl-C."),
    ] = 90.0,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for JSONL output and the connection report.")
    ] = Path("demo-out"),
    no_faults: Annotated[
        bool, typer.Option("--no-faults", help="Run the simulator without injected faults.")
    ] = False,
    status_addr: Annotated[
        str | None, typer.Option("--status-addr", metavar="HOST:PORT", help=_STATUS_ADDR_HELP)
    ] = None,
    no_status: Annotated[bool, typer.Option("--no-status", help="Do not serve the status API.")] = False,
    nats_url: Annotated[
        list[str] | None,
        typer.Option(
            "--nats",
            metavar="URL",
            help="Also publish every event to NATS JetStream at URL (stream CRYPTOLINK, subjects "
            "cryptolink.<channel>.<exchange>.<symbol>; docs/nats.md); repeat for a cluster's servers.",
        ),
    ] = None,
) -> None:
    """Run the simulator and a client against it on loopback, show live status (also on the dashboard,
    http://127.0.0.1:8766/), then write a report."""
    run_demo = _lazy("cryptolink.demo", "run_demo")
    try:
        base = status_from_env()  # the demo has no file: CRYPTOLINK__STATUS__... (the token) still apply
    except ConfigError as exc:
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)
    status = _status_config(base, status_addr, no_status)
    nats = None
    if nats_url:
        try:
            nats = NatsConfig.model_validate({"servers": nats_url})
        except ValidationError as exc:
            _fail(f"error: --nats: {exc.errors()[0]['msg']}", EXIT_BAD_CONFIG)
    _setup_logging("WARNING", "console")
    try:
        code = int(run_demo(duration or None, out, not no_faults, status, nats))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML configuration file.", metavar="CONFIG.yaml")],
    status_addr: Annotated[
        str | None, typer.Option("--status-addr", metavar="HOST:PORT", help=_RUN_STATUS_ADDR_HELP)
    ] = None,
    no_status: Annotated[bool, typer.Option("--no-status", help=_NO_STATUS_HELP)] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Log lines as JSON objects (default) or readable lines.")
    ] = LogFormat.JSON,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Also reload CONFIG.yaml whenever it changes (checked every second, reloaded once unchanged "
            "for a second), as SIGHUP does.",
        ),
    ] = False,
) -> None:
    """Stream what CONFIG.yaml asks for until stopped (Ctrl-C, SIGTERM...: graceful, report printed); SIGHUP
    reloads CONFIG.yaml (entries and symbols added or removed without touching the others; a file with errors is
    refused and the running configuration stays: docs/reload.md). Serves the status API, dashboard and metrics on
    127.0.0.1:8766 unless told otherwise."""
    file_cfg = _load(config)
    cfg = file_cfg.model_copy(update={"status": _status_config(file_cfg.status, status_addr, no_status)})
    run_config = _lazy("cryptolink.service", "run_config")
    _setup_logging(cfg.log_level, "console" if log_format is LogFormat.CONSOLE else "json", cfg)
    raise typer.Exit(int(run_config(cfg, path=config, watch=watch, file_config=file_cfg)))


@app.command()
def simulate(
    exchange: Annotated[
        list[str] | None,
        typer.Option(
            "--exchange",
            help="Exchange to simulate (a registered simulator id: binance, binanceusdm, okx, binancecoinm...); "
            "repeat for several (default: every registered one).",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Base port N: binance N, binanceusdm N+1, okx N+2, binancecoinm N+3; 0 picks free ports.",
        ),
    ] = 0,
    mode: Annotated[
        SimMode, typer.Option("--mode", help="Replay recordings or generate a synthetic market.")
    ] = SimMode.REPLAY,
    speed: Annotated[float, typer.Option("--speed", min=0.0, help="Replay speed factor (> 0).")] = 1.0,
    faults: Annotated[
        str | None,
        typer.Option(
            "--faults",
            help="Fault spec, e.g. 'drop@5s,stall:3s@12s,okx/gap:BTC-USDT@20s' "
            "(grammar: cryptolink.simulator.faults).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (faults, synthetic data).")] = 0,
    rest_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--rest-limit",
            metavar="EXCH=W/S",
            help="EXCHANGE=WEIGHT/SECONDS: scale an exchange's REST limit down for tests, e.g. binance=50/10 "
            "(429, then 418, with the exchange's headers); repeatable.",
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="Serve this file instead of the shipped recordings: a capture written by `cryptolink record` "
            "(docs/recording.md) or an hftbacktest-format Binance recording; --exchange defaults to its exchanges.",
        ),
    ] = None,
) -> None:
    """Run the exchange simulator until Ctrl-C; prints one JSON line per exchange with its addresses and the real
    hosts they stand for ({"exchange", "ws_url", "rest_url", "hosts"})."""
    if speed <= 0:
        _fail("error: --speed must be > 0", EXIT_BAD_CONFIG)
    run_simulator = _lazy("cryptolink.simulator", "run_simulator")
    registry = _lazy("cryptolink.simulator", "registry")
    parse_rest_limit = _lazy("cryptolink.simulator.runner", "parse_rest_limit")
    known = registry.names()
    names = list(exchange) if exchange else ([] if replay is not None else list(known))
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(
            f"error: unknown exchange {', '.join(unknown)}; choose from {', '.join(known)}", EXIT_BAD_CONFIG
        )
    try:
        limits = dict(parse_rest_limit(item) for item in rest_limit or ())
    except ValueError as exc:
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)
    _setup_logging("INFO", "console")  # after the arguments are checked: a refusal leaves logging as it was
    try:
        asyncio.run(run_simulator(names, host, port, mode.value, speed, faults, seed, limits, replay=replay))
    except KeyboardInterrupt:
        typer.echo("simulator stopped", err=True)
        raise typer.Exit(EXIT_OK) from None
    except ValueError as exc:  # unknown exchange, bad fault spec, a file that cannot be replayed ...
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)
    except FileNotFoundError as exc:  # --replay of a missing file
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)
    except OSError as exc:  # port in use, ...
        _fail(f"error: {exc}", EXIT_FAILURE)


@app.command("validate-config")
def validate_config(
    config: Annotated[Path, typer.Argument(help="YAML configuration file.", metavar="CONFIG.yaml")],
) -> None:
    """Check CONFIG.yaml: print a summary and exit 0, or list every wrong field and exit 2."""
    from cryptolink.report import config_summary

    cfg = _load(config)
    if cfg.output.enabled:
        check_output_dir = _lazy("cryptolink.sinks.outdir", "check_output_dir")
        output_error = _lazy("cryptolink.sinks.outdir", "OutputDirError")
        try:
            check_output_dir(cfg.output.dir)
        except output_error as exc:
            _fail(f"error: invalid configuration in {config}: output.dir: {exc}", EXIT_BAD_CONFIG)
    typer.echo(f"OK: {config}")
    typer.echo(config_summary(cfg))
    if cfg.verify_symbols:
        typer.echo("symbols are checked against each exchange's instrument list when `cryptolink run` starts")


@app.command()
def version() -> None:
    """Print the cryptolink version."""
    typer.echo(f"cryptolink {__version__}")


@app.command()
def record(
    config: Annotated[Path, typer.Argument(help="YAML configuration file.", metavar="CONFIG.yaml")],
    out: Annotated[
        Path, typer.Option("--out", help="Capture file to write (gzip JSON lines, see docs/recording.md).")
    ],
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.0, help="Stop after this many seconds (default: until Ctrl-C)."),
    ] = None,
) -> None:
    """Record every raw frame and REST snapshot CONFIG.yaml's streams receive into a replayable capture file
    (an unwritable --out is refused: exit 2); prints what was recorded."""
    cfg = _load(config)
    record_config = _lazy("cryptolink.record", "record_config")
    _setup_logging(cfg.log_level, "json", cfg)
    raise typer.Exit(int(record_config(cfg, out, duration or None)))


@app.command()
def status(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Status API of one instance; reads its /api/system/status (default http://127.0.0.1:8766).",
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="URL",
            help="Show every instance that publishes to this Redis (redis://[:password@]host:port/db) instead.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="CRYPTOLINK__STATUS__TOKEN",
            help="Bearer token of the status API (default: $CRYPTOLINK__STATUS__TOKEN).",
        ),
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", metavar="P", help="Key prefix in Redis (status.redis_prefix).")
    ] = "cryptolink",
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch", min=0.1, metavar="SECONDS", help="Refresh the table every SECONDS until Ctrl-C."
        ),
    ] = None,
) -> None:
    """Show every connection of a running instance (or of every instance in Redis) as a table. Exit 0 when all
    are healthy (instances stopped cleanly do not count), 1 when one is not or an instance is unknown (its
    snapshot expired), 2 when the endpoint or Redis cannot be read or an argument is wrong. Neither the token
    nor a URL's password is ever printed."""
    if url is not None and redis is not None:
        _fail("error: use --url or --redis, not both", EXIT_BAD_CONFIG)
    if token is not None:
        token = token.strip() or None  # a stray newline from a file or an empty variable: no token
        if token is not None and not all(" " <= ch <= "~" for ch in token):
            _fail(  # the value itself is never echoed: it is a secret, and may hold terminal escapes
                "error: --token (or CRYPTOLINK__STATUS__TOKEN) holds control or non-ASCII characters; "
                "a bearer token is printable ASCII",
                EXIT_BAD_CONFIG,
            )
    if redis is not None:
        load_cluster = _lazy("cryptolink.status.table", "load_cluster")

        def load() -> Any:
            return load_cluster(redis, prefix)
    else:
        load_instance = _lazy("cryptolink.status.table", "load_instance")
        target = url or _lazy("cryptolink.status.table", "DEFAULT_URL")

        def load() -> Any:
            return load_instance(target, token)

    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: the full table (rich would fold it to 80 columns)
        console = Console(highlight=False, width=160)
    if watch is not None:
        watch_views = _lazy("cryptolink.status.table", "watch")
        raise typer.Exit(int(watch_views(load, watch, console)))
    view = load()
    if view.error is not None:
        _fail(f"error: {view.error}", int(view.code))
    console.print(view.renderable)
    raise typer.Exit(int(view.code))


_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


@app.command("tail")
def tail_command(
    subject: Annotated[
        str,
        typer.Argument(
            metavar="SUBJECT",
            help="NATS subject, wildcards allowed: cryptolink.trades.binance.BTC-USDT, cryptolink.book.*.*, "
            "cryptolink.>.",
        ),
    ],
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            metavar="URL",
            help="NATS server URL; repeat for several (default nats://127.0.0.1:4222).",
        ),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start",
            help="Read the JetStream stream holding SUBJECT from its first message, then live.",
        ),
    ] = False,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=1, metavar="N", help="Start with the last N stored messages on SUBJECT, then live."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each raw payload (one JSON object per line).")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, metavar="N", help="Stop after N messages.")
    ] = None,
    creds: Annotated[
        Path | None, typer.Option("--creds", metavar="FILE", help="NATS .creds file (JWT and seed).")
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            metavar="SECONDS",
            help="Give up (exit 2) when no server answered within SECONDS.",
        ),
    ] = 5.0,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="CRYPTOLINK__NATS__TOKEN",
            help="NATS authentication token (default: $CRYPTOLINK__NATS__TOKEN). A user and password go in the URL.",
        ),
    ] = None,
) -> None:
    """Print the events published on a NATS SUBJECT, one line per message (time, subject and the key fields;
    --json: the raw payload), live by default. Exit 0 (also on Ctrl-C), 2 for a bad argument, an unreachable
    server or no stream holding SUBJECT. Neither a token nor a URL's password is ever printed."""
    import sys
    from urllib.parse import urlsplit

    from cryptolink.redact import redact_url

    if from_start and last is not None:
        _fail("error: use --from-start or --last, not both", EXIT_BAD_CONFIG)
    servers = list(server or ["nats://127.0.0.1:4222"])
    for url in servers:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in _NATS_SCHEMES and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            _fail(
                f"error: --server {redact_url(url)}: expected nats://HOST:PORT (or tls://, ws://, wss://)",
                EXIT_BAD_CONFIG,
            )
    if creds is not None and not creds.is_file():
        _fail(f"error: --creds {creds}: no such file", EXIT_BAD_CONFIG)
    if token is not None:
        token = token.strip() or None
    credentials_cls = _lazy("cryptolink.consumer.reader", "NatsCredentials")
    unavailable = _lazy("cryptolink.consumer.reader", "NatsUnavailable")
    run_tail = _lazy("cryptolink.consumer.tail", "tail")
    tail_error = _lazy("cryptolink.consumer.tail", "TailError")
    credentials = credentials_cls(token=token, creds_file=creds)
    try:
        stats = asyncio.run(
            run_tail(
                servers,
                subject,
                out=sys.stdout,
                credentials=credentials,
                from_start=from_start,
                last=last,
                count=count,
                as_json=as_json,
                connect_timeout_s=connect_timeout,
                start_timeout_s=connect_timeout,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None
    except BrokenPipeError:  # `cryptolink tail ... | head`
        raise typer.Exit(EXIT_OK) from None
    except (tail_error, unavailable) as exc:
        _fail(f"error: {exc}", EXIT_BAD_CONFIG)
    if stats.dropped:
        typer.echo(
            f"warning: {stats.dropped} messages dropped by the client (printing fell behind)", err=True
        )
    raise typer.Exit(EXIT_OK)


def main() -> None:
    """Console-script entry point (``cryptolink``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
