"""The README's examples stay true: its YAML validates and its Python parses and names real API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cryptolink.config import CryptolinkConfig
from cryptolink.manager import ExchangeManager

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_readme_yaml_is_a_valid_config() -> None:
    (yaml_text,) = blocks("yaml")
    cfg = CryptolinkConfig.from_yaml_text(yaml_text, env={})
    assert set(cfg.exchanges) == {"binance", "binance-perp", "okx"}


def test_readme_python_uses_existing_manager_methods() -> None:
    (code,) = blocks("python")
    tree = ast.parse(code)
    called = {
        n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    for name in {"builder", "trades", "book", "on"}:
        assert name in called and hasattr(ExchangeManager, name)


def test_readme_names_the_two_commands_first() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## Python API")
    assert text.index("make test") < text.index("## Python API")
