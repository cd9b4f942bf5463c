"""One owner for the background tasks of a connection or a session.

Why not :class:`asyncio.TaskGroup`: a task group must be entered by one enclosing ``async with`` that outlives
every child, and the first child that fails cancels all the others. A connection that stays up for months
needs the opposite: :meth:`ManagedConnection.start` returns at once, and a failed background send must be
logged (with its traceback) while the connection carries on. :class:`TaskOwner` keeps what a task group gives
(every task has an owner; closing the owner cancels and awaits every task, so none is left pending and none is
"destroyed but pending") without the fail-fast rule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskOwner"]

_T = TypeVar("_T")


class TaskOwner:
    """Spawns tasks, remembers them until they finish, logs their failures, cancels and awaits them on close.

    Args:
        name: prefix of task names and of log lines (the connection id).
        log: logger for task failures.
    """

    __slots__ = ("_closed", "_log", "_tasks", "name")

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, _T], what: str = "task") -> asyncio.Task[_T] | None:
        """Run ``coro`` as a task owned by this owner; ``None`` (and ``coro`` closed unrun) once closed.

        An exception other than cancellation is logged with its traceback (``"<name>-<what> failed"``).
        """
        if self._closed:
            coro.close()
            return None
        task = asyncio.create_task(coro, name=f"{self.name}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("%s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Refuse new tasks, cancel every running one (except the caller's own) and wait until all ended."""
        self._closed = True
        current = asyncio.current_task()
        waiting = [t for t in self._tasks if t is not current]
        for t in waiting:
            t.cancel()
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
