"""Hot reload of the whole configuration (``cryptolink run``: SIGHUP, or ``--watch``).

A reload reads the configuration file again (:func:`cryptolink.config.load_config`, with the same
``CRYPTOLINK__...`` environment overrides as at start) and validates it whole. A file with errors is refused:
every error is logged (one ERROR record naming every wrong field, as ``validate-config`` prints them), the
refusal is counted and the running configuration stays as it was. A valid file is compared with the running
configuration (:func:`plan_reload`) and only the differences are applied (:func:`apply_reload`):

- an exchange entry that appears (or is enabled) is started; one that disappears (or is disabled) is stopped;
- an entry whose only differences are ``symbols`` and/or ``channels`` is changed in place: the new streams are
  subscribed (onto its running connections where they have room), the dropped ones unsubscribed; its other
  streams and connections are not touched;
- an entry with any other difference (``ws_url``, ``market``, ``reconnect``, ``watchdog``, keys...) is replaced:
  stopped, then started with the new settings; if the new one cannot start (a symbol the exchange does not list)
  the old one is started again;
- entries that did not change are not touched at all (same connections, no reconnect);
- the ``rest`` section, when it differs, is handed to the REST manager (:class:`RestReconfigurable`).

Settings read only at start (everything outside ``exchanges`` and ``rest``: ``status.*``, ``output.*``,
``log_level``, ``consumer_queue_size``, ``overflow_policy``, ``event_log_size``, ``verify_symbols``) are not
applied: each changed one is named by its path in :attr:`ReloadPlan.restart_required` and in a WARNING, and the
rest of the reload goes on. One failing step (an entry that cannot start) is logged and recorded in
:class:`ReloadResult` and does not stop the others; the entry stays as it was where it could, and the next reload
tries again.

:class:`ConfigReloader` serialises reloads: a request (SIGHUP, a change seen by the watcher) during a reload
queues exactly one more, further ones are merged into it and counted (:attr:`ReloadStats.coalesced`).

``--watch`` (:meth:`ConfigReloader.watch`) polls the file's ``(st_mtime_ns, st_size, st_ino)`` every
``interval_s`` (1 s) on the injected clock and reloads once a change has been stable for one interval, so an
editor writing the file in pieces, or replacing it by a rename, never gets a half-written file reloaded. Polling
is the one way to watch a file without a new dependency (inotify is Linux-only); one ``stat`` per second costs
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel

from cryptolink.clock import Clock, SystemClock
from cryptolink.config import ConfigError, CryptolinkConfig, ExchangeConfig, RestConfig, load_config
from cryptolink.manager import ExchangeManager
from cryptolink.models import Subscription
from cryptolink.report import Section

__all__ = [
    "DEFAULT_WATCH_INTERVAL_S",
    "ChangeKind",
    "ConfigReloader",
    "EntryChange",
    "ReloadOptions",
    "ReloadOutcome",
    "ReloadPlan",
    "ReloadResult",
    "ReloadStats",
    "RestReconfigurable",
    "StepResult",
    "apply_reload",
    "plan_reload",
    "reload_section",
]

log = logging.getLogger("cryptolink.reload")

DEFAULT_WATCH_INTERVAL_S = 1.0
"""How often ``--watch`` looks at the file, s; a change is reloaded once stable for one interval."""

_REST = "rest"
_EXCHANGES = "exchanges"
_IN_PLACE_FIELDS = frozenset({"symbols", "channels"})


class RestReconfigurable(Protocol):
    """What a reload needs from the REST manager (:class:`cryptolink.rest.manager.RestManager`)."""

    async def reconfigure(self, config: RestConfig) -> object:
        """Apply a new ``rest`` section (members added/removed, groups, strategies, weights, limits).

        Raises:
            Exception: the section could not be applied (the reload records the failure and goes on).
        """
        ...


class ChangeKind(StrEnum):
    """What a reload does to one exchange entry."""

    ADDED = "added"
    """Enabled now, not before: started."""
    REMOVED = "removed"
    """Enabled before, not now (gone or ``enabled: false``): stopped."""
    CHANGED = "changed"
    """Only ``symbols``/``channels`` differ: streams subscribed/unsubscribed on the running connections."""
    REPLACED = "replaced"
    """Anything else differs: stopped, then started with the new settings."""
    UNCHANGED = "unchanged"
    """Nothing that matters differs (at most the order of its symbols): not touched."""


@dataclass(frozen=True, slots=True)
class EntryChange:
    """The plan for one exchange entry.

    Attributes:
        name: the entry's name (``exchanges.<name>``).
        kind: what happens to it.
        old / new: the entry before / after (``None``: not enabled there).
        fields: the paths within the entry that differ (``ws_url``, ``reconnect.max_delay_s``, ``symbols``,
            ``channels.book``); secrets are named, never shown.
        subscribe / unsubscribe: for :attr:`ChangeKind.CHANGED`, the streams to add / drop.
    """

    name: str
    kind: ChangeKind
    old: ExchangeConfig | None
    new: ExchangeConfig | None
    fields: tuple[str, ...] = ()
    subscribe: tuple[Subscription, ...] = ()
    unsubscribe: tuple[Subscription, ...] = ()

    def describe(self) -> str:
        """One phrase for the log: ``okx-b (+1 -1 streams)``, ``okx-c (ws_url, reconnect.max_delay_s)``."""
        if self.kind is ChangeKind.CHANGED:
            return f"{self.name} (+{len(self.subscribe)} -{len(self.unsubscribe)} streams)"
        if self.kind is ChangeKind.REPLACED:
            return f"{self.name} ({', '.join(self.fields)})"
        return self.name


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload changes (:func:`plan_reload`); pure data.

    Attributes:
        old / new: the running and the new configuration.
        entries: one :class:`EntryChange` per entry enabled in ``old`` or ``new``, by name.
        restart_required: paths of the settings that differ but are read only at start (``status.port``,
            ``output.dir``, ``log_level``...): not applied.
        rest_changed: ``new.rest != old.rest``.
        rest: the new ``rest`` section.
        target: the configuration that runs once everything is applied: ``old`` with ``new``'s exchanges and
            ``rest`` (the settings of ``restart_required`` keep their running values).
    """

    old: CryptolinkConfig
    new: CryptolinkConfig
    entries: tuple[EntryChange, ...]
    restart_required: tuple[str, ...]
    rest_changed: bool
    rest: RestConfig
    target: CryptolinkConfig

    def of(self, kind: ChangeKind) -> tuple[EntryChange, ...]:
        """The entries of one kind, by name."""
        return tuple(e for e in self.entries if e.kind is kind)

    @property
    def added(self) -> tuple[str, ...]:
        """Names of the entries to start."""
        return tuple(e.name for e in self.of(ChangeKind.ADDED))

    @property
    def removed(self) -> tuple[str, ...]:
        """Names of the entries to stop."""
        return tuple(e.name for e in self.of(ChangeKind.REMOVED))

    @property
    def changed(self) -> tuple[str, ...]:
        """Names of the entries changed in place (streams only)."""
        return tuple(e.name for e in self.of(ChangeKind.CHANGED))

    @property
    def replaced(self) -> tuple[str, ...]:
        """Names of the entries to stop and start again."""
        return tuple(e.name for e in self.of(ChangeKind.REPLACED))

    @property
    def unchanged(self) -> tuple[str, ...]:
        """Names of the running entries left alone."""
        return tuple(e.name for e in self.of(ChangeKind.UNCHANGED))

    @property
    def empty(self) -> bool:
        """Nothing to apply (``restart_required`` may still list settings that differ)."""
        return not self.rest_changed and all(e.kind is ChangeKind.UNCHANGED for e in self.entries)

    def summary(self) -> str:
        """One line: ``added okx-c; removed bin; changed okx-b (+1 -1 streams); 1 unchanged``."""
        parts = [
            f"{kind.value} {', '.join(e.describe() for e in self.of(kind))}"
            for kind in (ChangeKind.ADDED, ChangeKind.REMOVED, ChangeKind.REPLACED, ChangeKind.CHANGED)
            if self.of(kind)
        ]
        if self.rest_changed:
            parts.append("rest section changed")
        parts.append(f"{len(self.unchanged)} unchanged")
        if self.restart_required:
            parts.append(f"not applied until restart: {', '.join(self.restart_required)}")
        return "; ".join(parts)


def _diff_paths(
    old: BaseModel, new: BaseModel, prefix: str = "", skip: frozenset[str] = frozenset()
) -> list[str]:
    """Dotted paths of the fields that differ between two models of the same type (sub-models recursed)."""
    out: list[str] = []
    for name in type(old).model_fields:
        if name in skip:
            continue
        a, b = getattr(old, name), getattr(new, name)
        path = f"{prefix}{name}"
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            out.extend(_diff_paths(a, b, f"{path}."))
        elif a != b:  # SecretStr compares its secret values; only the path is ever shown
            out.append(path)
    return out


def _restart_only_fields() -> frozenset[str]:
    """Top-level fields applied only at start: everything but ``exchanges`` and ``rest``."""
    return frozenset(CryptolinkConfig.model_fields) - {_EXCHANGES, _REST}


def _with(
    base: CryptolinkConfig, exchanges: Mapping[str, ExchangeConfig], rest: RestConfig
) -> CryptolinkConfig:
    """``base`` with other exchanges and ``rest`` (not validated again: both come from validated configs)."""
    return base.model_copy(update={_EXCHANGES: dict(exchanges), _REST: rest})


def _entry_change(name: str, old: ExchangeConfig | None, new: ExchangeConfig | None) -> EntryChange:
    if old is None:
        return EntryChange(name, ChangeKind.ADDED, None, new)
    if new is None:
        return EntryChange(name, ChangeKind.REMOVED, old, None)
    fields = tuple(_diff_paths(old, new))
    if not fields:
        return EntryChange(name, ChangeKind.UNCHANGED, old, new)
    if all(f.split(".", 1)[0] in _IN_PLACE_FIELDS for f in fields):
        before, after = old.subscriptions(), new.subscriptions()
        kept_before, kept_after = set(before), set(after)
        subscribe = tuple(s for s in after if s not in kept_before)
        unsubscribe = tuple(s for s in before if s not in kept_after)
        kind = ChangeKind.CHANGED if subscribe or unsubscribe else ChangeKind.UNCHANGED  # reordered symbols
        return EntryChange(name, kind, old, new, fields, subscribe, unsubscribe)
    return EntryChange(name, ChangeKind.REPLACED, old, new, fields)


def plan_reload(old: CryptolinkConfig, new: CryptolinkConfig) -> ReloadPlan:
    """Compare the running configuration with a new one (pure: nothing is touched).

    Entries are compared by name among the enabled ones (an entry disabled in both is not in the plan).

    Args:
        old: the running configuration.
        new: the new, validated configuration.

    Returns:
        The plan; see :class:`ReloadPlan` and :class:`ChangeKind` for what each category means.
    """
    before, after = old.enabled_exchanges(), new.enabled_exchanges()
    names = sorted(set(before) | set(after))
    entries = tuple(_entry_change(n, before.get(n), after.get(n)) for n in names)
    skip = frozenset(CryptolinkConfig.model_fields) - _restart_only_fields()
    restart_required = tuple(_diff_paths(old, new, skip=skip))
    rest = new.rest
    return ReloadPlan(
        old=old,
        new=new,
        entries=entries,
        restart_required=restart_required,
        rest_changed=rest != old.rest,
        rest=rest,
        target=_with(old, new.exchanges, rest),
    )


# ------------------------------------------------------------------------------------------------ applying


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of :func:`apply_reload`.

    Attributes:
        target: the entry's name, or ``"rest"``.
        kind: ``added``, ``removed``, ``replaced``, ``changed`` (:class:`ChangeKind` values) or ``rest``.
        ok: the step did what the plan asked.
        detail: what was done (``started``, ``stopped``, ``+1 -1 streams``, ``old entry started again``...).
        error: why it failed (``BadSymbol: ...``), ``None`` when ``ok``.
    """

    target: str
    kind: str
    ok: bool
    detail: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What :func:`apply_reload` did.

    Attributes:
        steps: every step, in the order applied (removed, replaced, added, changed, rest).
        running: the configuration that runs now: :attr:`ReloadPlan.target` where every step succeeded; an entry
            whose step failed is as it runs (its old settings, or absent when it is not running: the next reload
            starts it), a failed ``rest`` keeps the old section.
    """

    steps: tuple[StepResult, ...]
    running: CryptolinkConfig

    @property
    def done(self) -> tuple[StepResult, ...]:
        """The steps that succeeded."""
        return tuple(s for s in self.steps if s.ok)

    @property
    def failed(self) -> tuple[StepResult, ...]:
        """The steps that failed."""
        return tuple(s for s in self.steps if not s.ok)

    @property
    def ok(self) -> bool:
        """Every step succeeded."""
        return not self.failed


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def apply_reload(
    plan: ReloadPlan, manager: ExchangeManager, rest: RestReconfigurable | None = None
) -> ReloadResult:
    """Apply ``plan`` to a running manager (and REST manager), step by step.

    Order: removed entries first (their connections and budgets are freed), then replaced ones (stop, start the
    new settings; if they cannot start, the old ones again), then added ones, then the in-place changes (new
    streams subscribed before the dropped ones are unsubscribed: make before break), then ``rest``. Unchanged
    entries are never touched. A failing step is recorded and logged; the others still run.

    Args:
        plan: from :func:`plan_reload` (``plan.old`` must be what ``manager`` runs).
        manager: the running manager (:meth:`~cryptolink.manager.ExchangeManager.add_exchange`,
            ``remove_exchange``, ``subscribe``, ``unsubscribe``).
        rest: the REST manager; ``None``: none runs, a changed ``rest`` section is a failed step.

    Returns:
        What was done and what failed; never raises for a failing step (:class:`asyncio.CancelledError`
        propagates).
    """
    steps: list[StepResult] = []
    running: dict[str, ExchangeConfig] = dict(plan.target.exchanges)

    def settle(change: EntryChange, fallback: ExchangeConfig | None) -> None:
        """After a failed step: the entry as it runs now (absent if it does not run)."""
        if change.name not in manager.feeds or fallback is None:
            running.pop(change.name, None)
        else:
            running[change.name] = fallback

    for change in plan.of(ChangeKind.REMOVED):
        try:
            await manager.remove_exchange(change.name)
            steps.append(StepResult(change.name, change.kind.value, True, "stopped"))
        except KeyError:  # not running (a previous reload could not start it): nothing to stop
            steps.append(StepResult(change.name, change.kind.value, True, "was not running"))
        except Exception as exc:
            steps.append(StepResult(change.name, change.kind.value, False, "stop failed", _error(exc)))
    for change in plan.of(ChangeKind.REPLACED):
        steps.append(await _replace(change, manager))
        if not steps[-1].ok:
            settle(change, change.old)
    for change in plan.of(ChangeKind.ADDED):
        assert change.new is not None
        try:
            await manager.add_exchange(change.name, change.new)
            steps.append(StepResult(change.name, change.kind.value, True, "started"))
        except Exception as exc:
            steps.append(StepResult(change.name, change.kind.value, False, "not started", _error(exc)))
            settle(change, None)
    for change in plan.of(ChangeKind.CHANGED):
        step, now = await _change(change, manager)
        steps.append(step)
        if not step.ok:
            settle(change, now)
    running_rest = plan.rest
    if plan.rest_changed:
        if rest is None:
            steps.append(
                StepResult(_REST, _REST, False, "not applied", "no REST manager runs in this process")
            )
            running_rest = plan.old.rest
        else:
            try:
                await rest.reconfigure(plan.rest)
                steps.append(StepResult(_REST, _REST, True, "reconfigured"))
            except Exception as exc:
                steps.append(StepResult(_REST, _REST, False, "not applied", _error(exc)))
                running_rest = plan.old.rest
    for step in steps:
        if not step.ok:
            log.error("reload: %s %s failed (%s): %s", step.kind, step.target, step.detail, step.error)
    return ReloadResult(tuple(steps), _with(plan.old, running, running_rest))


async def _replace(change: EntryChange, manager: ExchangeManager) -> StepResult:
    assert change.old is not None and change.new is not None
    kind = change.kind.value
    try:
        await manager.remove_exchange(change.name)
    except KeyError:  # not running (a previous reload could not start it): nothing to stop
        pass
    except Exception as exc:  # the feed is gone from the manager even so: go on with the start
        log.warning("reload: stopping %s before replacing it raised %s", change.name, _error(exc))
    try:
        await manager.add_exchange(change.name, change.new)
        return StepResult(change.name, kind, True, f"restarted ({', '.join(change.fields)})")
    except Exception as exc:
        error = _error(exc)
    try:
        await manager.add_exchange(change.name, change.old)
        return StepResult(change.name, kind, False, "new settings refused; old entry started again", error)
    except Exception as exc:
        return StepResult(change.name, kind, False, "not running", f"{error}; old entry: {_error(exc)}")


async def _change(change: EntryChange, manager: ExchangeManager) -> tuple[StepResult, ExchangeConfig | None]:
    """Subscribe, then unsubscribe; returns the step and the entry as it runs (for a failed step)."""
    kind = change.kind.value
    detail = f"+{len(change.subscribe)} -{len(change.unsubscribe)} streams"
    try:
        if change.subscribe:
            await manager.subscribe(
                change.name, change.subscribe
            )  # checks every symbol before registering one
    except Exception as exc:
        return StepResult(change.name, kind, False, "streams not changed", _error(exc)), change.old
    try:
        if change.unsubscribe:
            await manager.unsubscribe(change.name, change.unsubscribe)
    except Exception as exc:  # the streams are unregistered before the connections are told: as new
        return StepResult(change.name, kind, False, f"{detail} (unsubscribe raised)", _error(exc)), change.new
    return StepResult(change.name, kind, True, detail), change.new


# -------------------------------------------------------------------------------------------- the reloader


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """One reload, applied or refused.

    Attributes:
        path: the file read.
        trigger: what asked for it (``SIGHUP``, ``watch``, ``call``).
        applied: ``False``: the file was refused and nothing changed.
        errors: why it was refused: every problem as ``"path: message"`` (secrets never shown).
        plan / result: the plan and what applying it did (``None`` when refused).
        at_ns: wall-clock time the reload ended, epoch ns.
    """

    path: str
    trigger: str
    applied: bool
    errors: tuple[str, ...]
    plan: ReloadPlan | None
    result: ReloadResult | None
    at_ns: int


@dataclass(frozen=True, slots=True)
class ReloadStats:
    """Counters of a :class:`ConfigReloader` (a snapshot).

    Attributes:
        applied: reloads whose file was valid and applied (some steps may have failed: ``failed_steps``).
        refused: reloads whose file was refused (invalid, unreadable); the running configuration stayed.
        failed_steps: steps of applied reloads that failed (an entry that could not start...).
        requests: reloads asked for (signals, changes seen by the watcher).
        coalesced: requests merged into a reload already queued (a burst of signals during a reload gives one
            more reload, not one per signal).
        ignored: requests that arrived while the run was stopping (not reloaded).
        last_error: the latest refusal's or failed step's error (``None``: none yet).
        last_at_ns: when the latest reload ended, epoch ns (``None``: none yet).
        in_progress: a reload is running now.
    """

    applied: int
    refused: int
    failed_steps: int
    requests: int
    coalesced: int
    ignored: int
    last_error: str | None
    last_at_ns: int | None
    in_progress: bool


def reload_section(stats: ReloadStats) -> Section:
    """The report section of a run's reloads: what was applied, refused, failed, merged and ignored, and the
    latest error (on one line)."""
    lines = [
        f"  applied {stats.applied}, refused {stats.refused}, failed steps {stats.failed_steps} | requests "
        f"{stats.requests}, coalesced {stats.coalesced}, ignored {stats.ignored}"
    ]
    if stats.last_error:
        lines.append(
            "  last error: " + "; ".join(x.strip() for x in stats.last_error.splitlines() if x.strip())
        )
    return Section("configuration reloads", lines)


@dataclass(frozen=True, slots=True)
class ReloadOptions:
    """How :func:`cryptolink.service.serve` reloads its configuration.

    Attributes:
        path: the configuration file (SIGHUP reloads it).
        watch_interval_s: also reload it when it changes, polled this often, s (``None``: no ``--watch``).
        file_config: the configuration as the file gave it, before command-line options such as
            ``--status-addr`` (default: the configuration the run was given). Reloaded files are compared with it,
            so a command-line option is not reported as a setting that differs.
        env: the environment overrides (``None``: :data:`os.environ`, as at start).
        clock: the watcher's clock and the reload timestamps (tests inject a fake one).
        on_reload: called with every :class:`ReloadOutcome` (must be quick and not raise).
    """

    path: str | os.PathLike[str]
    watch_interval_s: float | None = None
    file_config: CryptolinkConfig | None = None
    env: Mapping[str, str] | None = None
    clock: Clock | None = None
    on_reload: Callable[[ReloadOutcome], None] | None = None


_Signature = tuple[int, int, int]


def _signature(path: str) -> _Signature | None:
    """``(st_mtime_ns, st_size, st_ino)`` of ``path`` (``None``: it cannot be read now)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigReloader:
    """Owns the running configuration of a run and reloads it on request.

    Args:
        config: the configuration the run started with (command-line options applied).
        manager: the running manager.
        path: the configuration file (required by :meth:`request` and :meth:`watch`; :meth:`reload` may name
            another).
        file_config: ``config`` as the file gave it, before command-line options (default ``config``).
        rest: the REST manager, if one runs.
        env: the environment overrides (``None``: :data:`os.environ`).
        clock: time source of the watcher and the timestamps.

    Requests made before :meth:`start` wait for it (the manager must have started first).
    """

    def __init__(
        self,
        config: CryptolinkConfig,
        manager: ExchangeManager,
        *,
        path: str | os.PathLike[str] | None = None,
        file_config: CryptolinkConfig | None = None,
        rest: RestReconfigurable | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._base = config
        self._file = file_config if file_config is not None else config
        self._config = config
        self._manager = manager
        self.path = None if path is None else os.fspath(path)
        # the file as the run loaded it (near enough: taken here): the watcher reloads what differs from it
        self._baseline = _signature(self.path) if self.path is not None else None
        self.rest = rest
        """The REST manager a changed ``rest`` section is handed to (may be set once it is built)."""
        self._env = env
        self._clock: Clock = clock or SystemClock()
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ReloadOutcome], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._queued: str | None = None  # the trigger of the reload queued behind the running one
        self._started = False
        self._closed = False
        self._applied = 0
        self._refused = 0
        self._failed_steps = 0
        self._requests = 0
        self._coalesced = 0
        self._ignored = 0
        self._last_error: str | None = None
        self._last_at_ns: int | None = None
        self.listener_errors = 0
        """Listener calls that raised (logged)."""

    # ------------------------------------------------------------------------------------------- reading

    @property
    def config(self) -> CryptolinkConfig:
        """The accepted configuration: the start's settings with the latest applied file's ``exchanges`` and
        ``rest`` (an entry that could not start is still in it: the status reports it as not running)."""
        return self._config

    @property
    def file_config(self) -> CryptolinkConfig:
        """What runs, as file settings: reloads are planned against it (an entry that could not start is absent
        from it, so the next reload tries again)."""
        return self._file

    def stats(self) -> ReloadStats:
        """The counters now."""
        return ReloadStats(
            applied=self._applied,
            refused=self._refused,
            failed_steps=self._failed_steps,
            requests=self._requests,
            coalesced=self._coalesced,
            ignored=self._ignored,
            last_error=self._last_error,
            last_at_ns=self._last_at_ns,
            in_progress=self._lock.locked(),
        )

    def add_listener(self, listener: Callable[[ReloadOutcome], None]) -> None:
        """Call ``listener(outcome)`` after every reload (quick, must not raise: errors are logged and counted)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------------------------------ reloading

    async def reload(
        self, path: str | os.PathLike[str] | None = None, *, trigger: str = "call"
    ) -> ReloadOutcome:
        """Read, validate and apply the configuration file (serialised with every other reload).

        Args:
            path: the file (default: :attr:`path`).
            trigger: what asked for it, for the log and :attr:`ReloadOutcome.trigger`.

        Returns:
            The outcome; a refused file is an outcome with ``applied=False``, never an exception.

        Raises:
            ValueError: no ``path`` and none given at construction.
        """
        source = os.fspath(path) if path is not None else self.path
        if source is None:
            raise ValueError("no configuration file to reload")
        async with self._lock:
            outcome = await self._reload(source, trigger)
        self._last_at_ns = outcome.at_ns
        for listener in tuple(self._listeners):
            try:
                listener(outcome)
            except Exception:
                self.listener_errors += 1
                log.exception("a reload listener failed")
        return outcome

    async def _reload(self, source: str, trigger: str) -> ReloadOutcome:
        try:
            new = load_config(source, env=self._env)
        except ConfigError as exc:
            errors = tuple(f"{p}: {m}" if p else m for p, m in exc.problems)
            self._refused += 1
            self._last_error = str(exc)
            log.error(
                "reload (%s) refused, the running configuration stays: %s",
                trigger,
                exc,
                extra={"reload_errors": list(errors)},
            )
            return ReloadOutcome(source, trigger, False, errors, None, None, self._clock.time_ns())
        plan = plan_reload(self._file, new)
        for field in plan.restart_required:
            log.warning(
                "reload (%s): %s differs but is read only at start: not applied until restart", trigger, field
            )
        result = await apply_reload(plan, self._manager, self.rest)
        self._file = result.running
        self._config = _with(self._base, plan.target.exchanges, result.running.rest)
        self._manager.config = self._config  # entries started from now on read it; the guards' fallback too
        self._applied += 1
        self._failed_steps += len(result.failed)
        if result.failed:
            self._last_error = "; ".join(f"{s.kind} {s.target}: {s.error}" for s in result.failed)
        if plan.empty:
            log.info("reload (%s) of %s: nothing to change; %s", trigger, source, plan.summary())
        else:
            log.info(
                "reload (%s) of %s applied%s: %s",
                trigger,
                source,
                f" with {len(result.failed)} failed step(s)" if result.failed else "",
                plan.summary(),
            )
        return ReloadOutcome(source, trigger, True, (), plan, result, self._clock.time_ns())

    # ------------------------------------------------------------------------------------------- requests

    def start(self) -> None:
        """Let requests run (the manager has started); a request made before runs now."""
        self._started = True
        if self._queued is not None and not self._closed:
            self._spawn()

    def request(self, trigger: str = "SIGHUP") -> None:
        """Ask for a reload of :attr:`path` from synchronous code (a signal handler, the watcher). It runs in
        the background; during a reload exactly one more is queued, further requests are merged into it
        (:attr:`ReloadStats.coalesced`); after :meth:`aclose` requests are ignored (counted)."""
        if self.path is None:
            raise ValueError("no configuration file to reload")
        self._requests += 1
        if self._closed:
            self._ignored += 1
            log.warning("%s: the run is stopping; not reloading", trigger)
            return
        if self._queued is not None:
            self._coalesced += 1
            log.info("%s: a reload is already queued; this request is merged into it", trigger)
            return
        self._queued = trigger
        if self._started and (self._task is None or self._task.done()):
            self._spawn()
        elif self._lock.locked():
            log.info("%s: a reload is running; one more is queued", trigger)

    def _spawn(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="config-reload")

    async def _drain(self) -> None:
        while self._queued is not None and not self._closed:
            trigger, self._queued = self._queued, None
            try:
                await self.reload(trigger=trigger)
            except Exception as exc:  # a bug: never let it end the run
                self._last_error = _error(exc)
                log.exception("reload (%s) failed unexpectedly; the run goes on", trigger)

    async def watch(self, interval_s: float = DEFAULT_WATCH_INTERVAL_S) -> None:
        """Watch :attr:`path` until cancelled: look at its ``(st_mtime_ns, st_size, st_ino)`` every
        ``interval_s`` (s, on the injected clock) and :meth:`request` a reload once it differs from the file the
        run loaded (as seen when this reloader was made) or last reloaded, and has stayed the same for one
        interval. A file that is missing (an editor's rename in progress) is waited for; a missing file
        that stays missing is logged once, not reloaded.

        Raises:
            ValueError: no :attr:`path`, or ``interval_s`` not positive.
        """
        if self.path is None:
            raise ValueError("no configuration file to watch")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        path = self.path
        last = settled = self._baseline
        while True:
            await self._clock.sleep(interval_s)
            now = _signature(path)
            if now != last:  # still changing, or just changed: look again one interval later
                last = now
                continue
            if now == settled:
                continue
            settled = now
            if now is None:
                log.warning("watch: %s is missing; waiting for it to come back", path)
                continue
            log.info("watch: %s changed", path)
            self.request("watch")

    def close(self) -> None:
        """Stop taking requests (the run is stopping): later ones are ignored and counted, a queued one is
        dropped. Idempotent; :meth:`aclose` also cancels a reload in progress."""
        if not self._closed and self._queued is not None:
            self._ignored += 1
        self._closed = True
        self._queued = None

    async def aclose(self) -> None:
        """:meth:`close`, then cancel a reload in progress (the run is stopping: the manager's stop closes
        whatever it had started). Idempotent."""
        self.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
