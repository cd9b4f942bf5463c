"""Secrets never leave a real ``cryptolink run`` process: not in a log line, not in a response.

A ``cryptolink run`` subprocess streams from the simulator with exchange credentials, a status token (in the
file, overridden by ``CRYPTOLINK__STATUS__TOKEN``; it holds a space and a ``!``, which browsers and Python
encode differently) and a Redis URL with a password, at DEBUG. Every status endpoint and the WebSocket are
requested with the token in a header (and refused without it); the WebSocket and one endpoint also with the
token in the query, as the dashboard sends it, and with a wrong one. After SIGTERM every line the process wrote
and every response body are scanned for the secret values in every form they could be written in (percent-
encoded in upper- or lowercase hex, as a repr, as a JSON string). The responses are checked for
their expected content (the connection's id...) so that the scan is not of empty pages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import InvalidStatus

from cryptolink.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

API_KEY = "file-api-key-5b1f0c2d"
API_SECRET = "file-api-secret-9d2e7a41"
FILE_TOKEN = "file-status-token-3c8e4177"
ENV_TOKEN = "env-status token!a7f2d90e"  # a space and a '!': encoded differently by browsers and Python
WRONG_TOKEN = "wrong token!probe-51b3c9"  # sent in a query: refused, and never logged either
REDIS_PASSWORD = "redis-password-6e0b55c3"
SECRETS = (API_KEY, API_SECRET, FILE_TOKEN, ENV_TOKEN, REDIS_PASSWORD, WRONG_TOKEN)

CONNECTION = "okx-ws-1"
EXPECTED = {  # path -> (status codes, text every answer must contain)
    "/api/system/status": ({200}, CONNECTION),
    "/api/connections": ({200}, CONNECTION),
    "/api/events": ({200}, CONNECTION),
    "/api/report": ({200}, CONNECTION),
    "/healthz": ({200}, '"alive"'),
    "/readyz": ({200, 503}, '"ready"'),
    "/": ({200}, "<html"),
    "/docs": ({200}, "swagger"),
    "/openapi.json": ({200}, '"/api/system/status"'),
    "/api/cluster/status": ({200}, '"instances"'),
}
METRICS = "/metrics"  # checked on its own: Prometheus text


def browser_encoded(text: str) -> str:
    """``text`` as JavaScript's ``encodeURIComponent`` encodes it (the dashboard passes its token so)."""
    return quote(text, safe="-_.!~*'()")


def written_forms(secret: str) -> dict[str, str]:
    """The forms a secret could take in a log line or a body, spelled out here (not taken from the code under
    test): as given, in a URL (Python's, browsers' and form encodings, upper- and lowercase hex), in a repr and
    in a JSON string."""

    def lower_hex(text: str) -> str:
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)

    forms = {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "encodeURIComponent": browser_encoded(secret),
        "quote_plus": quote_plus(secret),
        "repr": repr(secret)[1:-1],
        "json": json.dumps(secret)[1:-1],
    }
    forms.update({f"{k}, lowercase hex": lower_hex(v) for k, v in list(forms.items()) if "%" in v})
    return forms


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def collect(stream: asyncio.StreamReader, lines: list[str], marker: str, seen: asyncio.Event) -> None:
    """Read ``stream`` to its end into ``lines`` (so the process never blocks on a full pipe); set ``seen``
    at the first line containing ``marker``."""
    while raw := await stream.readline():
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        if marker in line:
            seen.set()


async def push_showing(ws: websockets.ClientConnection, text: str) -> str:
    """The first ``/ws/status`` message that contains ``text`` (pushes come on state changes and every
    push interval)."""
    async for message in ws:
        body = message if isinstance(message, str) else message.decode()
        if text in body:
            return body
    raise AssertionError(f"the push stream ended before showing {text}")


async def test_no_secret_in_any_log_line_or_response(tmp_path: Path) -> None:
    port = free_port()
    prefix = f"cryptolink-secrets-test-{os.getpid()}"
    instance = f"secrets-test-{os.getpid()}"
    redis_url = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379/15"
    bodies: dict[str, str] = {}
    statuses: dict[str, int] = {}
    err_lines: list[str] = []
    out_lines: list[str] = []
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        ep = sim.endpoints()["okx"]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            "exchanges:\n"
            "  okx:\n"
            "    symbols: [BTC/USDT]\n"
            f"    ws_url: '{ep['ws_url']}'\n"
            f"    rest_url: '{ep['rest_url']}'\n"
            f"    api_key: '{API_KEY}'\n"
            f"    api_secret: '{API_SECRET}'\n"
            "status:\n"
            f"  port: {port}\n"
            f"  token: '{FILE_TOKEN}'\n"
            "  snapshot_interval_s: 0.2\n"
            "  push_interval_s: 0.5\n"
            f"  redis_url: '{redis_url}'\n"
            f"  redis_prefix: '{prefix}'\n"
            f"  instance_id: '{instance}'\n"
            "log_level: DEBUG\n",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CRYPTOLINK__")}
        env["CRYPTOLINK__STATUS__TOKEN"] = ENV_TOKEN
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cryptolink.cli",
            "run",
            str(cfg),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        serving = asyncio.Event()
        readers = [
            asyncio.create_task(collect(proc.stderr, err_lines, "status API on", serving)),
            asyncio.create_task(collect(proc.stdout, out_lines, "\0", asyncio.Event())),
        ]
        try:
            await asyncio.wait_for(serving.wait(), 30)
            auth = {"Authorization": f"Bearer {ENV_TOKEN}"}
            ws_url = f"ws://127.0.0.1:{port}/ws/status"
            async with websockets.connect(ws_url, additional_headers=auth) as ws:
                bodies["/ws/status"] = await asyncio.wait_for(push_showing(ws, CONNECTION), 30)
            # as the dashboard does it: the token in the address, encoded by the browser
            async with websockets.connect(f"{ws_url}?token={browser_encoded(ENV_TOKEN)}") as ws:
                bodies["/ws/status?token="] = await asyncio.wait_for(push_showing(ws, CONNECTION), 30)
            with pytest.raises(InvalidStatus) as wrong:
                async with websockets.connect(f"{ws_url}?token={browser_encoded(WRONG_TOKEN)}"):
                    pass
            assert wrong.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(ws_url):
                    pass
            assert refused.value.response.status_code == 401
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for path in [*EXPECTED, METRICS]:
                    answer = await client.get(path, headers=auth)
                    statuses[path], bodies[path] = answer.status_code, answer.text
                    if path == "/":  # the page's static HTML (no data) loads without it: a reload works
                        continue
                    assert (await client.get(path)).status_code == 401, path
                    # the file's token was overridden by the environment's: it no longer opens anything
                    old = await client.get(path, headers={"Authorization": f"Bearer {FILE_TOKEN}"})
                    assert old.status_code == 401, path
                # the token in the query: browser-encoded in the address, and form-encoded by httpx
                by_query = await client.get(f"/api/connections?token={browser_encoded(ENV_TOKEN)}")
                statuses["?token= (browser)"], bodies["?token= (browser)"] = (
                    by_query.status_code,
                    by_query.text,
                )
                by_params = await client.get("/api/connections", params={"token": ENV_TOKEN})
                statuses["?token= (form)"], bodies["?token= (form)"] = by_params.status_code, by_params.text
                wrong_query = await client.get("/healthz", params={"token": WRONG_TOKEN})
                assert wrong_query.status_code == 401
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
            await asyncio.wait_for(asyncio.gather(*readers), 10)
            client_redis = aioredis.from_url(redis_url)
            keys = [key async for key in client_redis.scan_iter(f"{prefix}:*")]
            if keys:
                await client_redis.delete(*keys)
            await client_redis.aclose()
    stderr = "".join(err_lines)
    assert code == 0, stderr[-3000:]

    # the responses are the real documents, not error pages
    for path, (codes, text) in EXPECTED.items():
        assert statuses[path] in codes, (path, statuses[path], bodies[path][:300])
        assert text in bodies[path], (path, bodies[path][:300])
    assert '"exchange_status"' in bodies["/ws/status"] and '"exchange_status"' in bodies["/ws/status?token="]
    for how in ("?token= (browser)", "?token= (form)"):
        assert statuses[how] == 200 and CONNECTION in bodies[how], (how, statuses[how], bodies[how][:300])
    # uvicorn logged the handshake with its query (DEBUG): the scan below looks at real request lines
    assert any("/ws/status?token=" in line for line in err_lines), "no handshake line with a query logged"
    assert instance in bodies["/api/cluster/status"]  # the Redis status was written and read back
    assert statuses[METRICS] == 200 and "# TYPE cryptolink_" in bodies[METRICS], bodies[METRICS][:300]

    # the log is the run's: one JSON object per line, with the connection's events as records
    records = [json.loads(line) for line in err_lines if line.strip()]
    assert any(r["event"].startswith("status API on") for r in records)
    states = {
        r.get("state")
        for r in records
        if r["logger"] == "cryptolink.events" and r["connection"] == CONNECTION
    }
    assert {"connecting", "connected", "stopped"} <= states
    stdout = "".join(out_lines)
    assert "cryptolink connection report" in stdout and CONNECTION in stdout

    # no secret anywhere, in any form
    for name, text in {"stderr": stderr, "stdout": stdout, **bodies}.items():
        for secret in SECRETS:
            for form_name, form in written_forms(secret).items():
                leaks = [line[:600] for line in text.splitlines() if form in line]
                assert not leaks, f"{secret!r} ({form_name}: {form!r}) found in {name}: {leaks[0]}"
