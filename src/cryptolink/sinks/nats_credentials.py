"""NATS credentials of a ``nats:`` section, shared by the NATS sink, the stream readers and the cluster worker:
the keyword arguments of :meth:`nats.aio.client.Client.connect` and the secret texts to scrub from errors and
logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptolink.redact import url_secrets

if TYPE_CHECKING:
    from cryptolink.config import NatsConfig

__all__ = ["NatsCredentials"]


@dataclass(frozen=True, slots=True, repr=False)
class NatsCredentials:
    """How to authenticate to NATS; all optional (a URL's ``user:password@`` works too).

    Attributes:
        user / password: user and password (together).
        token: an authentication token.
        creds_file: a NATS ``.creds`` file (JWT and NKey seed).

    The secrets never appear in ``repr`` or in error texts of this package.
    """

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: Path | None = None

    @classmethod
    def from_config(cls, cfg: NatsConfig) -> NatsCredentials:
        """The credentials of a configuration's ``nats`` section."""
        return cls(
            user=cfg.user.get_secret_value() if cfg.user is not None else None,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            token=cfg.token.get_secret_value() if cfg.token is not None else None,
            creds_file=cfg.creds_file,
        )

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`nats.aio.client.Client.connect`."""
        kw: dict[str, Any] = {}
        if self.user is not None:
            kw["user"] = self.user
        if self.password is not None:
            kw["password"] = self.password
        if self.token is not None:
            kw["token"] = self.token
        if self.creds_file is not None:
            kw["user_credentials"] = str(self.creds_file)
        return kw

    def secrets(self, servers: Sequence[str] = ()) -> list[str]:
        """The secret values to scrub from texts: the password, the token, and the credentials written in the
        ``servers`` URLs."""
        out = [s for s in (self.password, self.token) if s]
        out.extend(s for url in servers for s in url_secrets(url))
        return out

    def __repr__(self) -> str:
        return (
            f"NatsCredentials(user={self.user!r}, password={'***' if self.password else None}, "
            f"token={'***' if self.token else None}, creds_file={self.creds_file!r})"
        )
