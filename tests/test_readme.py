"""The README's examples stay true: its YAML validates and its Python parses and names real API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cryptolink.config import CryptolinkConfig, RestConfig
from cryptolink.manager import ExchangeManager, ManagerBuilder
from cryptolink.rest.manager import RestManager

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_readme_yaml_is_a_valid_config() -> None:
    yaml_text, rest_text, nats_text = blocks("yaml")
    workers = CryptolinkConfig.from_yaml_text(nats_text, env={})
    assert workers.nats is not None and workers.nats.cluster.enabled and workers.nats.cluster.redundancy == 2
    cfg = CryptolinkConfig.from_yaml_text(yaml_text, env={})
    assert set(cfg.exchanges) == {"binance", "binance-perp", "okx"}
    rest = RestConfig.from_yaml_text(rest_text)
    assert set(rest.groups) == {"btc-spot", "binance"}
    assert rest.groups["binance"].strategy == "weighted"
    combined = CryptolinkConfig.from_yaml_text(yaml_text + rest_text, env={})
    assert combined.rest == rest


def test_readme_rest_example_names_real_api() -> None:
    (code,) = [b for b in blocks("python") if "RestManager" in b]
    tree = ast.parse(code)
    called = {
        n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    for name in ("from_yaml", "call", "call_group", "stats"):
        assert name in called and callable(getattr(RestManager, name)), name


def test_readme_python_uses_existing_manager_methods() -> None:
    code = [b for b in blocks("python") if "RestManager" not in b]
    assert len(code) == 2  # the API example and the same pointed at the simulator
    called: set[str] = set()
    for block in code:
        tree = ast.parse(block)
        called |= {
            n.func.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
    for name in {"builder", "trades", "book", "on", "report"}:
        assert name in called and callable(getattr(ExchangeManager, name)), name
    for name in {"exchange", "build"}:
        assert name in called and callable(getattr(ManagerBuilder, name)), name


def test_readme_lists_only_existing_manager_methods() -> None:
    """The backticked method names in the API bullets exist on the manager."""
    text = README.read_text()
    api = text[text.index("## Python API") : text.index("## What happens when things go wrong")]
    bullets = "\n".join(line for line in api.splitlines() if line.startswith(("- ", "  ")))
    names = set(re.findall(r"`([a-z_]+)(?:\(|`)", bullets))
    methods = {
        "trades",
        "tickers",
        "book_updates",
        "gaps",
        "connection_events",
        "book",
        "subscribe",
        "reconnect",
    }
    methods |= {"resync", "add_exchange", "remove_exchange", "unsubscribe", "reconnect_all", "states"}
    methods |= {"check_health", "stats", "report"}
    assert methods <= names, methods - names
    for name in methods:
        assert callable(getattr(ExchangeManager, name)), name


def test_readme_names_the_two_commands_first() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## Python API")
    assert text.index("make test") < text.index("## Python API")
