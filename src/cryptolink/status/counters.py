"""Sums of per-object counters that never go down, for the Prometheus exporter.

Some exported counters are sums over objects that come and go: the book counters of a feed (one book per
symbol; a book goes away when its symbol is unsubscribed) and the bus counters of the consumers sharing a name
(a consumer goes away when it is closed). A plain sum drops when an object goes away, and Prometheus reads any
drop as a counter reset: ``increase()`` then counts the whole remaining sum again (a false
``CryptolinkBookResyncLoop``). :class:`MonotonicSum` keeps the last counts seen of each present member and adds
those of a member that vanished, or was replaced by a fresh one whose counters restarted lower, to a *retired*
total: the sum it reports never decreases.

Memory is bounded by the members present now plus one retired total per counter name: nothing is kept per
vanished member. Counts a member made after the last :meth:`MonotonicSum.update` before it vanished are not
seen (the sum is exact at each update, it does not undercount what it saw).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

__all__ = ["MonotonicSum", "MonotonicSums"]


class MonotonicSum:
    """The non-decreasing sum of several named counters over a changing set of members."""

    __slots__ = ("_last", "_retired")

    def __init__(self) -> None:
        self._last: dict[Hashable, dict[str, int]] = {}
        self._retired: dict[str, int] = {}

    @property
    def members(self) -> int:
        """Members remembered (those of the latest update)."""
        return len(self._last)

    def _retire(self, counts: Mapping[str, int]) -> None:
        for name, n in counts.items():
            self._retired[name] = self._retired.get(name, 0) + n

    def update(self, members: Iterable[tuple[Hashable, Mapping[str, int]]]) -> dict[str, int]:
        """Take the members present now and return the totals per counter name.

        Args:
            members: ``(key, {counter name: count})`` of every member present now; the key identifies a
                member across updates (a book's symbol, a consumer's id). Repeated keys are added up.

        Returns:
            Per counter name, the retired total plus the present members' counts; a name never reported
            before is absent. For each name the value is never lower than at the previous update.
        """
        current: dict[Hashable, dict[str, int]] = {}
        for key, counts in members:
            row = current.setdefault(key, {})
            for name, n in counts.items():
                row[name] = row.get(name, 0) + n
        for key, before in self._last.items():
            now = current.get(key)
            if now is None or any(now.get(name, 0) < n for name, n in before.items()):
                self._retire(before)  # gone, or replaced by a new member whose counters started again
        self._last = current
        totals = dict(self._retired)
        for row in current.values():
            for name, n in row.items():
                totals[name] = totals.get(name, 0) + n
        return totals


class MonotonicSums:
    """One :class:`MonotonicSum` per aggregated series group (a feed, a consumer name), created on first use;
    a group missing from an update round is forgotten (:meth:`keep_only`), so memory follows the groups
    present."""

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict[Hashable, MonotonicSum] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def update(
        self, group: Hashable, members: Iterable[tuple[Hashable, Mapping[str, int]]]
    ) -> dict[str, int]:
        """:meth:`MonotonicSum.update` of ``group``'s sum."""
        acc = self._groups.get(group)
        if acc is None:
            acc = self._groups[group] = MonotonicSum()
        return acc.update(members)

    def keep_only(self, groups: Iterable[Hashable]) -> None:
        """Forget every group not in ``groups`` (its series are no longer exposed)."""
        keep = set(groups)
        for group in [g for g in self._groups if g not in keep]:
            del self._groups[group]
