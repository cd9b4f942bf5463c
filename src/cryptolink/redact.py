"""Secrets inside URLs: a password in the user info (or a lone user info) and ``password``-like query values.

:func:`redact_url` shows a URL without them, :func:`url_secrets` lists them (for the log redactor and for error
texts), :func:`scrub` removes given secrets from a text. Used by the Redis status publisher and reader, the
``cryptolink status`` command and the log configuration.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "scrub", "url_secrets"]

_SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "auth"})


def redact_url(url: str) -> str:
    """``url`` with its password (user info or ``?password=`` query) replaced by ``***``.

    ``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``; a lone user info
    (``redis://secret@host``) is treated as a password too. A URL that cannot be parsed comes back as
    ``<unparseable url>`` (it may hold a secret in an unexpected place).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else "***"
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets :func:`redact_url` hides in ``url`` (the password, a lone user info, ``?password=``
    values), raw and percent-decoded; the whole URL when it cannot be parsed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    found = [password if colon else user] if userinfo else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
