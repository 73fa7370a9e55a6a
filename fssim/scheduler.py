"""The core scheduler's hangup tasks (`sched_hangup`, `sched_del`, execute_on_answer).

FreeSWITCH stores a task's runtime in whole epoch seconds (`now + N`, now truncated) and its
scheduler thread checks once a second, so a `+N` hangup fires between N-1 and N+1 seconds after
it was asked for. The simulator keeps that: tasks fire at `runtime + phase`, where `phase` is
the sub-second offset of the scheduler's tick.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fssim.timers import Timer

TASK_DESC = "switch_ivr_schedule_hangup"


@dataclass(eq=False)
class HangupTask:
    task_id: int
    group: str  # the channel uuid
    runtime: int  # epoch seconds
    cause: str
    timer: Timer | None = field(default=None, repr=False)


class Scheduler:
    """Hangup tasks by id and by group (uuid); several tasks per uuid may coexist.

    A due task calls `hangup(uuid, cause)`; adding and removing one calls
    `announce(ADD_SCHEDULE | DEL_SCHEDULE, task)`, which fires the event.
    """

    def __init__(self, hangup: Callable[[str, str], None],
                 announce: Callable[[str, HangupTask], None], phase: float | None = None) -> None:
        self._hangup = hangup
        self._announce = announce
        self.phase = (time.time() % 1.0) if phase is None else phase % 1.0
        self._ids = itertools.count(3)  # 1 and 2 are FreeSWITCH's heartbeat and check_ip
        self.tasks: dict[int, HangupTask] = {}
        self._groups: dict[str, dict[int, HangupTask]] = {}

    def schedule_hangup(self, runtime: int, uuid: str, cause: str) -> HangupTask:
        """Add a task (never replaces an earlier one); fires ADD_SCHEDULE."""
        task = HangupTask(next(self._ids), uuid, runtime, cause)
        self.tasks[task.task_id] = task
        self._groups.setdefault(uuid, {})[task.task_id] = task
        now = time.time()
        fire_at = runtime + self.phase
        if fire_at <= now:
            fire_at = math.floor(now - self.phase) + 1 + self.phase
        task.timer = Timer(fire_at - now, self._run, task)
        self._announce("ADD_SCHEDULE", task)
        return task

    def pending(self, uuid: str) -> list[HangupTask]:
        """Tasks still waiting for a channel."""
        return list(self._groups.get(uuid, {}).values())

    def _forget(self, task: HangupTask) -> bool:
        if self.tasks.pop(task.task_id, None) is None:
            return False
        group = self._groups.get(task.group)
        if group is not None:
            group.pop(task.task_id, None)
            if not group:
                del self._groups[task.group]
        return True

    def delete_task(self, task_id: int) -> int:
        task = self.tasks.get(task_id)
        if task is None:
            return 0
        self._forget(task)
        self._cancel(task, announce=True)
        return 1

    def delete_group(self, uuid: str) -> int:
        """sched_del <uuid>: remove every task of the group; fires DEL_SCHEDULE for each."""
        tasks = self.pending(uuid)
        for task in tasks:
            self._forget(task)
            self._cancel(task, announce=True)
        return len(tasks)

    def drop_group(self, uuid: str) -> None:
        """The channel is gone: forget its tasks quietly (FreeSWITCH would run them later as
        no-ops; dropping them keeps long safety nets from piling up under load)."""
        for task in self.pending(uuid):
            self._forget(task)
            self._cancel(task, announce=False)

    def cancel_all(self) -> None:
        for task in list(self.tasks.values()):
            self._cancel(task, announce=False)
        self.tasks.clear()
        self._groups.clear()

    def _cancel(self, task: HangupTask, announce: bool) -> None:
        if task.timer is not None:
            task.timer.cancel()
        if announce:
            self._announce("DEL_SCHEDULE", task)

    def _run(self, task: HangupTask) -> None:
        if not self._forget(task):
            return
        self._hangup(task.group, task.cause)
        self._announce("DEL_SCHEDULE", task)
