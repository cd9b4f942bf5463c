"""One exception root: every public error class the client defines derives from CryptolinkError, there is one
ConfigError, and the tree drawn in cryptolink.errors names each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cryptolink
from cryptolink import errors
from cryptolink.errors import ConfigError, CryptolinkError


def _client_error_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(cryptolink.__path__, "cryptolink."):
        if info.name.startswith("cryptolink.simulator"):  # the simulator imports nothing of the client
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found.append(obj)
    return found


def test_every_public_error_derives_from_the_root_and_is_in_the_tree() -> None:
    classes = _client_error_classes()
    assert len(classes) >= 15  # the walk found the package's errors
    outside = [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, CryptolinkError)]
    assert outside == []
    tree = errors.__doc__ or ""
    undrawn = [c.__name__ for c in classes if c.__name__ not in tree]
    assert undrawn == []


def test_one_config_error() -> None:
    from cryptolink import config, engine
    from cryptolink.feed import BadSymbol

    assert config.ConfigError is ConfigError and engine.ConfigError is ConfigError
    assert issubclass(BadSymbol, ConfigError)
    single = ConfigError("unknown market 'x'")
    assert str(single) == "unknown market 'x'" and single.problems == [("", "unknown market 'x'")]
    many = ConfigError([("a.b", "wrong"), ("", "also")], "f.yaml")
    assert str(many) == "invalid configuration in f.yaml: 2 problems\n  a.b: wrong\n  also"
