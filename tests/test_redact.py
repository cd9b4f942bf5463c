"""Secrets inside URLs: redacted for display, listed raw and percent-decoded, scrubbed from texts."""

from __future__ import annotations

import pytest

from cryptolink.redact import redact_url, scrub, url_secrets


# ------------------------------------------------------------------------------------------ URL redaction
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("rediss://ops:hunter2@redis.example:6380/1", "rediss://ops:***@redis.example:6380/1"),
        ("redis://hunter2@10.0.0.1:6379", "redis://***@10.0.0.1:6379"),
        ("redis://10.0.0.1:6379/0?password=hunter2&db=2", "redis://10.0.0.1:6379/0?password=***&db=2"),
        ("unix://:hunter2@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_the_password_is_redacted_from_urls(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# ------------------------------------------------------------------------------------------------ secrets
def test_secrets_are_found_raw_and_percent_decoded_and_scrubbed() -> None:
    url = "redis://ops:p%40ss-w0rd@10.0.0.1:6379/0?password=other-secret"
    secrets = url_secrets(url)
    assert set(secrets) == {"p%40ss-w0rd", "p@ss-w0rd", "other-secret"}
    text = scrub("auth p@ss-w0rd failed for p%40ss-w0rd; other-secret", secrets)
    assert text == "auth *** failed for ***; ***"
    assert url_secrets("redis://lonely-secret@host:6379") == ["lonely-secret"]
