from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cryptolink.bus import OverflowPolicy
from cryptolink.config import (
    ENV_PREFIX,
    SUPPORTED,
    ConfigError,
    CryptolinkConfig,
    ExchangeConfig,
    env_var_name,
    load_config,
)
from cryptolink.models import Channel, Market, Subscription

VALID_YAML = """
exchanges:
  binance:
    market: spot
    symbols: [BTC/USDT, ETH/USDT]
    channels: {trades: true, ticker: false, book: true}
    api_key: file-key-binance
    api_secret: file-secret-binance
    ws_url: ws://127.0.0.1:9001
    reconnect: {initial_delay_s: 0.5, max_delay_s: 60, max_attempts: 10}
  okx-perp:
    exchange: okx
    market: perpetual
    symbols: [BTC/USDT:USDT]
    channels: [trades, book]
    watchdog: {first_data_timeout_s: 10, min_idle_s: 2, max_idle_s: 30}
    rotation_lead_s: 120
output: {enabled: true, dir: /tmp/out}
consumer_queue_size: 500
overflow_policy: drop_newest
log_level: debug
"""


def test_valid_yaml_loads_every_field() -> None:
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env={})
    bn = cfg.exchanges["binance"]
    assert bn.exchange == "binance"  # defaulted from the entry's key
    assert bn.market is Market.SPOT
    assert bn.symbols == ["BTC/USDT", "ETH/USDT"]
    assert bn.channels.enabled_channels() == (Channel.TRADES, Channel.BOOK)
    assert bn.ws_url == "ws://127.0.0.1:9001"
    assert bn.reconnect.initial_delay_s == 0.5
    assert bn.reconnect.multiplier == 2.0
    assert bn.reconnect.max_attempts == 10
    assert bn.reconnect.reset_after_s == 2.0
    assert bn.api_key is not None and bn.api_key.get_secret_value() == "file-key-binance"
    okx = cfg.exchanges["okx-perp"]
    assert okx.exchange == "okx"
    assert okx.market is Market.PERPETUAL
    assert okx.channels.enabled_channels() == (Channel.TRADES, Channel.BOOK)
    assert okx.watchdog.max_idle_s == 30
    assert okx.rotation_lead_s == 120
    assert cfg.output.enabled and cfg.output.dir == Path("/tmp/out")
    assert cfg.consumer_queue_size == 500
    assert cfg.overflow_policy is OverflowPolicy.DROP_NEWEST
    assert cfg.log_level == "DEBUG"
    assert cfg.event_log_size == 100


def test_defaults_and_subscriptions() -> None:
    ex = ExchangeConfig(exchange="binance", symbols=["BTC/USDT"])
    assert ex.enabled and not ex.testnet and ex.market is Market.SPOT
    assert ex.reconnect.max_attempts is None and ex.reconnect.max_delay_s == 30
    assert ex.subscriptions() == [
        Subscription(Channel.TRADES, "BTC/USDT"),
        Subscription(Channel.TICKER, "BTC/USDT"),
        Subscription(Channel.BOOK, "BTC/USDT", None),
    ]
    cfg = CryptolinkConfig(exchanges={"binance": ex})
    assert cfg.overflow_policy is OverflowPolicy.DROP_OLDEST
    assert cfg.consumer_queue_size == 10_000
    assert cfg.enabled_exchanges() == {"binance": ex}


def test_every_wrong_field_is_named_in_one_error() -> None:
    text = """
exchanges:
  binance:
    symbols: [BTC/USDT, BTCUSDT]
    market: spot
    reconnect: {initial_delay_s: -1}
    colour: blue
  okx:
    market: perpetual
    symbols: [BTC/USDT]
  kraken:
    symbols: [BTC/USD]
overflow_policy: sometimes
consumer_queue_size: 0
"""
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={}, source="bad.yaml")
    err = info.value
    paths = {path for path, _ in err.problems}
    assert "exchanges.binance.symbols[1]" in paths
    assert "exchanges.binance.reconnect.initial_delay_s" in paths
    assert "exchanges.binance.colour" in paths
    assert "exchanges.okx.symbols[0]" in paths
    assert "exchanges.kraken.exchange" in paths
    assert "overflow_policy" in paths
    assert "consumer_queue_size" in paths
    text_msg = str(err)
    assert "bad.yaml" in text_msg
    assert "exchanges.binance.symbols[1]: 'BTCUSDT' is not a unified symbol binance spot accepts" in text_msg
    assert "exchanges.binance.colour: unknown key" in text_msg
    assert "Traceback" not in text_msg and "errors.pydantic.dev" not in text_msg
    assert text_msg.count("\n") == len(err.problems)  # header + one line per problem


def test_cross_field_problems_are_reported_with_every_other_problem() -> None:
    """Duplicate symbols and entry names that collide in the environment used to be reported only when
    nothing else was wrong; they are found on the raw data now."""
    text = """
exchanges:
  okx-perp:
    exchange: okx
    symbols: [BTC/USDT, BTC/USDT, nope]
  okx_perp:
    exchange: okx
    symbols: [ETH/USDT]
    reconnect: {initial_delay_s: -1}
consumer_queue_size: 0
"""
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={})
    problems = info.value.problems
    assert ("exchanges.okx-perp.symbols", "duplicate symbols ['BTC/USDT']") in problems
    assert any("map to the same environment variables" in m for p, m in problems if p == "exchanges")
    assert {p for p, _ in problems} >= {
        "exchanges.okx-perp.symbols[2]",
        "exchanges.okx_perp.reconnect.initial_delay_s",
        "consumer_queue_size",
    }
    assert len(problems) == len(set(problems))  # each reported once


def test_all_entries_disabled_is_refused() -> None:
    text = "exchanges:\n  binance: {symbols: [BTC/USDT], enabled: false}\n  okx: {symbols: [BTC/USDT], enabled: false}\n"
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={})
    assert info.value.problems == [
        ("exchanges", "every exchange entry is disabled (enabled: false): there is nothing to stream")
    ]


def test_depth_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(
            "exchanges:\n  binance: {symbols: [BTC/USDT], channels: {depth: 20}}\n", env={}
        )
    ((path, msg),) = info.value.problems
    assert path == "exchanges.binance.channels" and "'depth' is not supported" in msg


def test_supported_list_can_be_passed_in() -> None:
    text = "exchanges:\n  binance:\n    market: perpetual\n    symbols: [BTC/USDT:USDT]\n"
    CryptolinkConfig.from_yaml_text(text, env={})
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={}, supported={"binance": (Market.SPOT,)})
    assert [p for p, _ in info.value.problems] == ["exchanges.binance.market"]
    with pytest.raises(ConfigError):
        CryptolinkConfig.from_yaml_text(text, env={}, supported={"okx": (Market.SPOT,)})
    # ccxt's ids of every registered exchange, and the aliases ccxt still knows (gateio, huobi)
    assert set(SUPPORTED) == {
        "binance",
        "binanceusdm",
        "binancecoinm",
        "okx",
        "bybit",
        "bitget",
        "gate",
        "gateio",
        "htx",
        "huobi",
    }


def test_ccxt_ids_single_market_default_and_inverse_shapes() -> None:
    """ccxt's ids work as exchange ids; an id with one market needs no ``market``; each market accepts the
    symbol shapes its registration declares (COIN-M inverse only, USDⓈ-M linear only, OKX swaps both)."""
    text = (
        "exchanges:\n"
        "  coinm:\n    exchange: binancecoinm\n    symbols: [BTC/USD:BTC]\n"
        "  usdm:\n    exchange: binanceusdm\n    symbols: [BTC/USDT:USDT]\n"
        "  okx-swaps:\n    exchange: okx\n    market: perpetual\n    symbols: [BTC/USDT:USDT, BTC/USD:BTC]\n"
    )
    cfg = CryptolinkConfig.from_yaml_text(text, env={})
    assert (
        cfg.exchanges["coinm"].market is Market.PERPETUAL and cfg.exchanges["usdm"].market is Market.PERPETUAL
    )
    bad = (
        "exchanges:\n"
        "  coinm:\n    exchange: binancecoinm\n    symbols: [BTC/USDT:USDT]\n"
        "  usdm:\n    exchange: binanceusdm\n    symbols: [BTC/USD:BTC]\n"
        "  spot:\n    exchange: binance\n    symbols: [BTC/USD:BTC]\n"
    )
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(bad, env={})
    problems = dict(info.value.problems)
    assert (
        "binancecoinm perpetual accepts; expected BASE/QUOTE:BASE" in problems["exchanges.coinm.symbols[0]"]
    )
    assert "binanceusdm perpetual accepts; expected BASE/QUOTE:QUOTE" in problems["exchanges.usdm.symbols[0]"]
    assert "binance spot accepts" in problems["exchanges.spot.symbols[0]"]


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        ("exchanges: {}", "exchanges"),
        ("exchanges:\n  binance: {symbols: []}", "exchanges.binance.symbols"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT, BTC/USDT]}", "exchanges.binance.symbols"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT], channels: []}", "exchanges.binance.channels"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT], channels: [candles]}", "exchanges.binance.channels"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT], ws_url: 'http://x'}", "exchanges.binance.ws_url"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT], rest_url: 'ws://x'}", "exchanges.binance.rest_url"),
        (
            "exchanges:\n  binance: {symbols: [BTC/USDT], reconnect: {initial_delay_s: 10, max_delay_s: 5}}",
            "exchanges.binance.reconnect",
        ),
        (
            "exchanges:\n  binance: {symbols: [BTC/USDT], watchdog: {min_idle_s: 9, max_idle_s: 1}}",
            "exchanges.binance.watchdog",
        ),
        ("exchanges:\n  'bad name': {exchange: binance, symbols: [BTC/USDT]}", "exchanges"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT]}\nlog_level: loud", "log_level"),
        ("exchanges:\n  binance: {symbols: [BTC/USDT]}\nevent_log_size: 0", "event_log_size"),
    ],
)
def test_single_bad_field(snippet: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(snippet, env={})
    assert path in [p for p, _ in info.value.problems], str(info.value)


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"YAML syntax error: line \d+, column \d+"):
        CryptolinkConfig.from_yaml_text("exchanges:\n  binance: [unclosed\n", env={})
    with pytest.raises(ConfigError, match="mapping at top level, got empty"):
        CryptolinkConfig.from_yaml_text("", env={})
    with pytest.raises(ConfigError, match="got a list"):
        CryptolinkConfig.from_yaml_text("- 1\n", env={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_secrets_never_leak() -> None:
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env={})
    from cryptolink.report import config_summary

    for text in (
        repr(cfg),
        str(cfg),
        cfg.model_dump_json(),
        str(cfg.model_dump()),
        repr(cfg.exchanges["binance"]),
        config_summary(cfg),
    ):
        assert "file-key-binance" not in text
        assert "file-secret-binance" not in text
    assert "api key set" in config_summary(cfg)
    # a wrongly typed secret is reported without echoing it
    bad = "exchanges:\n  binance: {symbols: [BTC/USDT], api_key: [top-secret-value]}\n"
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(bad, env={})
    assert "top-secret-value" not in str(info.value)
    assert "exchanges.binance.api_key" in str(info.value)


def test_env_overrides_any_key_nested_with_double_underscores(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID_YAML, encoding="utf-8")
    env = {
        "CRYPTOLINK__EXCHANGES__BINANCE__API_KEY": "env-key",
        "CRYPTOLINK__EXCHANGES__OKX_PERP__API_SECRET": "env-secret",  # entry okx-perp
        "cryptolink__exchanges__okx_perp__reconnect__max_attempts": "7",  # names are case-insensitive
        "CRYPTOLINK__EXCHANGES__BINANCE__RECONNECT__MAX_ATTEMPTS": "null",  # null is None
        "CRYPTOLINK__EXCHANGES__BINANCE__SYMBOLS": '["SOL/USDT"]',  # lists are JSON
        "CRYPTOLINK__STATUS__PORT": "9000",
        "CRYPTOLINK__STATUS__TOKEN": "env-token-9f3b61d2",
        "CRYPTOLINK__LOG_LEVEL": "warning",
        "CRYPTOLINK__OUTPUT": '{"enabled": false, "max_files": 3}',  # a section as JSON ...
        "CRYPTOLINK__OUTPUT__MAX_FILES": "5",  # ... and one of its keys: the key wins
        "CRYPTOLINK__CONSUMER_QUEUE_SIZE": "",  # empty: ignored
        "CRYPTOLINK_PROPERTY_SCALE": "3",  # not the prefix: ignored
    }
    cfg = load_config(path, env=env)
    bn = cfg.exchanges["binance"]
    assert bn.api_key is not None and bn.api_key.get_secret_value() == "env-key"
    assert bn.api_secret is not None and bn.api_secret.get_secret_value() == "file-secret-binance"
    assert bn.reconnect.max_attempts is None and bn.reconnect.initial_delay_s == 0.5  # the rest of the file
    assert bn.symbols == ["SOL/USDT"]
    okx = cfg.exchanges["okx-perp"]
    assert okx.api_secret is not None and okx.api_secret.get_secret_value() == "env-secret"
    assert okx.api_key is None and okx.reconnect.max_attempts == 7
    assert cfg.status.port == 9000
    assert cfg.status.token is not None and cfg.status.token.get_secret_value() == "env-token-9f3b61d2"
    assert cfg.log_level == "WARNING"
    assert cfg.output.enabled is False and cfg.output.max_files == 5 and cfg.output.dir == Path("/tmp/out")
    assert cfg.consumer_queue_size == 500


def test_env_var_name() -> None:
    assert env_var_name("okx-perp", "api_secret") == "CRYPTOLINK__EXCHANGES__OKX_PERP__API_SECRET"
    assert (
        env_var_name("binance", "reconnect.max_attempts")
        == "CRYPTOLINK__EXCHANGES__BINANCE__RECONNECT__MAX_ATTEMPTS"
    )
    assert env_var_name("Bin.ance") == "CRYPTOLINK__EXCHANGES__BIN_ANCE"
    assert ENV_PREFIX == "CRYPTOLINK__"


def test_the_old_single_underscore_variables_are_not_read() -> None:
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env={"CRYPTOLINK_BINANCE_API_KEY": "old-style"})
    key = cfg.exchanges["binance"].api_key
    assert key is not None and key.get_secret_value() == "file-key-binance"


def test_env_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOLINK__EXCHANGES__BINANCE__API_SECRET", "from-os-environ")
    cfg = CryptolinkConfig.from_yaml_text("exchanges:\n  binance: {symbols: [BTC/USDT]}\n")
    secret = cfg.exchanges["binance"].api_secret
    assert secret is not None and secret.get_secret_value() == "from-os-environ"
    ignored = CryptolinkConfig.from_yaml_text("exchanges:\n  binance: {symbols: [BTC/USDT]}\n", env={})
    assert ignored.exchanges["binance"].api_secret is None


def test_env_problems_name_the_variable_and_never_the_value() -> None:
    env = {
        "CRYPTOLINK__EXCHANGES__KRAKEN__API_KEY": "secret-value-1",  # no such entry: not created
        "CRYPTOLINK__EXCHANGES": '{"kraken": {"api_key": "secret-value-2"}}',  # entries are not set whole
        "CRYPTOLINK__LOGLEVEL": "secret-value-3",  # no such key
        "CRYPTOLINK__LOG_LEVEL__X": "secret-value-4",  # log_level has no sub-keys
        "CRYPTOLINK__EXCHANGES__BINANCE__SYMBOLS": "BTC/USDT secret-value-5",  # a list that is not JSON
        "CRYPTOLINK__STATUS__PORT": "secret-value-6",  # wrong type
        "CRYPTOLINK__STATUS__PROT": "secret-value-7",  # unknown key inside a section
        "CRYPTOLINK__EXCHANGES__OKX_PERP__RECONNECT__MAX_ATTEMPTS": "0",  # out of range
        "CRYPTOLINK__STATUS__TOKEN": '{"x": "secret-value-8"}',
    }
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(VALID_YAML, env=env, source="c.yaml")
    text = str(info.value)
    assert "secret-value" not in text
    problems = dict(info.value.problems)
    assert "entries: binance, okx-perp" in problems["CRYPTOLINK__EXCHANGES__KRAKEN__API_KEY"]
    assert "cannot add entries" in problems["CRYPTOLINK__EXCHANGES"]
    assert "no configuration key" in problems["CRYPTOLINK__LOGLEVEL"]
    assert "no configuration key" in problems["CRYPTOLINK__LOG_LEVEL__X"]
    assert "JSON" in problems["CRYPTOLINK__EXCHANGES__BINANCE__SYMBOLS"]
    assert problems["status.port"].endswith("(from environment variable CRYPTOLINK__STATUS__PORT)")
    assert problems["status.prot"] == "unknown key (from environment variable CRYPTOLINK__STATUS__PROT)"
    attempts = problems["exchanges.okx-perp.reconnect.max_attempts"]
    assert attempts.endswith(
        "(from environment variable CRYPTOLINK__EXCHANGES__OKX_PERP__RECONNECT__MAX_ATTEMPTS)"
    )
    assert len(info.value.problems) == 8  # the token is a valid (odd) string


@pytest.mark.parametrize(
    ("var", "value", "path"),
    [
        ("CRYPTOLINK__STATUS__TOKEN", "null", "status.token"),
        ("CRYPTOLINK__STATUS__TOKEN", "NULL", "status.token"),
        ("CRYPTOLINK__STATUS", '{"token": null}', "status.token"),  # a JSON null in a section
        ("CRYPTOLINK__STATUS", '{"port": 9000, "token": "Null"}', "status.token"),
        ("CRYPTOLINK__STATUS__REDIS_URL", "null", "status.redis_url"),
        ("CRYPTOLINK__EXCHANGES__BINANCE__API_KEY", "null", "exchanges.binance.api_key"),
        ("CRYPTOLINK__EXCHANGES__OKX_PERP__API_SECRET", "null", "exchanges.okx-perp.api_secret"),
    ],
)
def test_null_cannot_unset_a_secret_from_the_environment(var: str, value: str, path: str) -> None:
    text = VALID_YAML + "status: {token: file-token-4b0d2e9a71, redis_url: 'redis://127.0.0.1:6379/0'}\n"
    assert CryptolinkConfig.from_yaml_text(text, env={}).status.token is not None
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={var: value})
    assert len(info.value.problems) == 1
    (where, message) = info.value.problems[0]
    assert where == var  # the variable is named...
    assert message.startswith(f"not applied: {path} is a secret, which the environment cannot unset")
    # ... and nothing else of it is applied (the port of the section's JSON neither)


def test_null_still_unsets_other_keys_and_a_secret_may_be_the_word_in_a_longer_value() -> None:
    env = {
        "CRYPTOLINK__EXCHANGES__BINANCE__RECONNECT__MAX_ATTEMPTS": "null",
        "CRYPTOLINK__STATUS__TOKEN": "null-is-not-the-whole-value",
    }
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env=env)
    assert cfg.exchanges["binance"].reconnect.max_attempts is None
    assert (
        cfg.status.token is not None
        and cfg.status.token.get_secret_value() == env["CRYPTOLINK__STATUS__TOKEN"]
    )


def test_file_problems_do_not_blame_the_environment() -> None:
    bad = VALID_YAML.replace("consumer_queue_size: 500", "consumer_queue_size: 0")
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(bad, env={"CRYPTOLINK__STATUS__PORT": "9000"})
    assert info.value.problems == [("consumer_queue_size", "Input should be greater than or equal to 1")]


def test_config_is_immutable() -> None:
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env={})
    with pytest.raises(Exception, match="frozen"):
        cfg.consumer_queue_size = 3


def test_documented_example_is_valid() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = doc.split("## Full example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    cfg = CryptolinkConfig.from_yaml_text(example, env={})
    assert set(cfg.exchanges) == {"binance", "binance-perp", "binance-coinm", "okx", "okx-perp", "okx-sim"}
    assert set(cfg.enabled_exchanges()) == {"binance", "binance-perp", "binance-coinm", "okx", "okx-sim"}
    assert cfg.exchanges["binance-coinm"].market is Market.PERPETUAL


def test_documented_keys_match_the_models() -> None:
    """Every key of every section is in its section's table of docs/configuration.md."""
    from cryptolink.config import (
        ChannelsConfig,
        NatsClusterConfig,
        NatsConfig,
        NatsStreamConfig,
        OutputConfig,
        ReconnectConfig,
        RestConfig,
        RestGroupConfig,
        RestHealthConfig,
        RestLimitsConfig,
        RestMemberConfig,
        RestRetryConfig,
        StatusConfig,
        WatchdogConfig,
    )

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    sections: dict[str, type[BaseModel]] = {
        "## Top level": CryptolinkConfig,
        "## Exchange entry": ExchangeConfig,
        "### Channels": ChannelsConfig,
        "### Reconnect": ReconnectConfig,
        "### Watchdog": WatchdogConfig,
        "## Output": OutputConfig,
        "## Status": StatusConfig,
        "## REST": RestConfig,
        "### REST member": RestMemberConfig,
        "### REST group": RestGroupConfig,
        "### REST limits": RestLimitsConfig,
        "### REST health": RestHealthConfig,
        "### REST retry": RestRetryConfig,
        "## NATS": NatsConfig,
        "### NATS stream": NatsStreamConfig,
        "### NATS cluster": NatsClusterConfig,
    }
    for heading, model in sections.items():
        assert f"\n{heading}\n" in doc, heading
        body = doc.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
        for key in model.model_fields:
            assert f"`{key}`" in body and f"| `{key}`" in body.replace(", `", "| `"), (
                f"{model.__name__}.{key} is not documented under {heading!r}"
            )


def test_documented_environment_examples_are_applied() -> None:
    """The variables the environment section shows as examples set the keys they say they set."""
    env = {
        "CRYPTOLINK__LOG_LEVEL": "DEBUG",
        "CRYPTOLINK__STATUS__PORT": "9000",
        "CRYPTOLINK__OUTPUT": '{"enabled": true, "dir": "/data"}',
        "CRYPTOLINK__EXCHANGES__OKX_PERP__RECONNECT__MAX_ATTEMPTS": "20",
    }
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for var in env:
        assert f"`{var}=" in doc, var
    cfg = CryptolinkConfig.from_yaml_text(VALID_YAML, env=env)
    assert cfg.log_level == "DEBUG" and cfg.status.port == 9000
    assert cfg.output.enabled and cfg.output.dir == Path("/data")
    assert cfg.exchanges["okx-perp"].reconnect.max_attempts == 20


def test_rest_section_reports_every_problem_at_once_and_hides_secrets() -> None:
    text = """
exchanges:
  binance: {symbols: [BTC/USDT]}
rest:
  members:
    a: {exchange: binance, api_key: "SECRETKEY123", weight: 0}
    "bad name": {exchange: okx}
  groups:
    g: {members: [a, nope], strategy: fastest}
    a: {members: [a]}
  limits: {share: 2, overrides: {binance: {weight: [0, 60]}}}
"""
    with pytest.raises(ConfigError) as info:
        CryptolinkConfig.from_yaml_text(text, env={})
    paths = {path for path, _ in info.value.problems}
    assert {
        "rest.members.a.weight",
        "rest.members",
        "rest.groups",
        "rest.groups.g.members",
        "rest.groups.g.strategy",
        "rest.limits.share",
        "rest.limits.overrides.binance.weight[0]",
    } <= paths
    assert "SECRETKEY123" not in str(info.value)


def test_rest_section_alone_from_yaml() -> None:
    from cryptolink.config import RestConfig

    rest = RestConfig.from_yaml_text("rest:\n  members:\n    a: {exchange: okx, ip: nat-1}\n")
    assert rest.members["a"].ip == "nat-1" and rest.retry.max_attempts == 3
    with pytest.raises(ConfigError, match="no 'rest' mapping"):
        RestConfig.from_yaml_text("exchanges: {}\n")
    with pytest.raises(ConfigError, match=r"rest\.members\.a\.exchange"):
        RestConfig.from_yaml_text("rest:\n  members:\n    a: {exchange: Not-An-Id}\n")


def test_nats_section_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        CryptolinkConfig.from_dict(
            {
                "exchanges": {"binance": {"symbols": ["BTC/USDT"]}},
                "nats": {
                    "servers": ["http://127.0.0.1:4222"],
                    "subject_root": "a..b",
                    "channels": ["trades", "orders"],
                    "stream": {"replicas": 7},
                    "cluster": {"lease_ttl_s": 10, "renew_interval_s": 6},
                },
            },
            env={},
        )
    text = str(err.value)
    for field in (
        "nats.servers[0]",
        "nats.subject_root",
        "nats.channels[1]",
        "nats.stream.replicas",
        "nats.cluster:",
    ):
        assert field in text, field
    assert "renew_interval_s (6) must be below half of lease_ttl_s (10)" in text


def test_nats_defaults_and_credentials() -> None:
    cfg = CryptolinkConfig.from_dict(
        {"exchanges": {"binance": {"symbols": ["BTC/USDT"]}}, "nats": {"subject_root": "acme.md"}}, env={}
    )
    assert cfg.nats is not None
    assert cfg.nats.stream_subjects == ["acme.md.>"]
    assert cfg.nats.cluster.renew_every_s == pytest.approx(10 / 3)
    assert (
        CryptolinkConfig.from_dict({"exchanges": {"binance": {"symbols": ["BTC/USDT"]}}}, env={}).nats is None
    )
    cases: list[tuple[dict[str, str], str]] = [
        ({"user": "u"}, "user and password go together"),
        ({"user": "u", "password": "p", "token": "t"}, "either token or user and password"),
    ]
    for bad, message in cases:
        with pytest.raises(ConfigError, match=message):
            CryptolinkConfig.from_dict(
                {"exchanges": {"binance": {"symbols": ["BTC/USDT"]}}, "nats": bad}, env={}
            )
