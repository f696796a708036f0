"""``sweep run --workers N``: worker processes on this host, watched, replaced, stopped.

The parent creates the study and its MLflow parent run, trains the teacher once, then
starts one ``sweep worker`` process per slot (pinned to its GPU, or to its share of the
cores). Workers count for themselves (see :mod:`runners.gate`) and exit when the study
holds its target. The parent only watches:

- the storage, every half second, for the one progress display of the pool (workers
  write to log files under ``<home>/workers/``, not to the terminal);
- its children: one that dies (a crash, SIGKILL, the OOM killer) has its trial failed in
  Optuna and MLflow and retried (``--max-retries``), and is replaced, within a limit;
- Ctrl-C: every worker gets SIGINT (it fails its trial and ends its MLflow run), laggards
  are killed after a grace period and cleaned up here, and the interrupt goes on up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from runners.held import clear_held, read_held
from runners.monitor import PoolMonitor
from runners.recovery import fail_orphans, reap_dead_workers, release_trial
from runners.session import close_session, open_session
from runners.slots import PoolOptions, Slot, plan_slots, slot_env, usable_cpus
from runners.worker import POOL_PARENT_ENV, stop_on_sigterm
from sweep.errors import SweepError
from sweep.paths import study_lock_path, workers_dir
from sweep.search.space import SearchSpace
from sweep.search.study import (
    SweepSession,
    SweepSummary,
    parent_running,
)
from sweep.search.study_teacher import study_teacher
from sweep.track.progress import preparing

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30.0
RESTARTS_PER_SLOT = 3  # beyond this, workers that keep dying are a bug, not bad luck


@dataclass
class _Member:
    slot: Slot
    process: subprocess.Popen[bytes]
    log: Path


def run_pool(
    space: SearchSpace,
    trials: int,
    options: PoolOptions,
    storage_url: str | None = None,
    home: Path | None = None,
    show_progress: bool = True,
) -> SweepSummary:
    """Run (or continue) a study with a pool of worker processes on this host.

    Args:
        space: the validated search space.
        trials: finished trials the study should hold; the pool stops at exactly this many.
        options: how many workers, on which GPUs, and how often a dead worker's trial is
            retried.
        storage_url: Optuna storage; default the journal file under the home folder.
        home: the sweep home folder; default ``$SWEEP_HOME`` or ``./sweep-runs``.
        show_progress: draw the live display (it is off anyway when not on a terminal).

    Returns:
        The summary, as :func:`runners.local.run_sweep` gives it.
    """
    import torch

    slots = plan_slots(options, torch.cuda.device_count(), usable_cpus())
    session = open_session(space, trials, storage_url, home, options.max_retries)
    run_pooled(session, slots, options.max_retries, show_progress)
    return close_session(session)


def run_pooled(
    session: SweepSession, slots: list[Slot], max_retries: int, show_progress: bool
) -> None:
    """Run an open study's trials in worker processes, one per slot, until it holds its
    target (a search's trials, or a final study's queued trainings)."""
    with stop_on_sigterm(), parent_running(session):
        _Pool(session, slots, max_retries, show_progress).run()


class _Pool:
    """The running pool: its members (one process per slot) and what it does when they exit."""

    def __init__(
        self, session: SweepSession, slots: list[Slot], max_retries: int, show_progress: bool
    ) -> None:
        self.session = session
        self.slots = slots
        self.max_retries = max_retries
        self.show_progress = show_progress
        self.members: list[_Member] = []
        self.restarts = 0
        self.monitor: PoolMonitor | None = None
        self.lock = FileLock(str(study_lock_path(session.home, session.space.study_name)))

    def run(self) -> None:
        s = self.session
        with PoolMonitor(s, self.show_progress) as monitor:
            self.monitor = monitor
            with self.lock:  # what an earlier, killed run left behind
                reap_dead_workers(s.study, s.storage, s.tracker, s.parent_id, s.home, 0)
                fail_orphans(s.study, s.storage, s.tracker, s.parent_id, s.home)
            if monitor.done():
                return
            try:
                self.members = [self._start(slot) for slot in self.slots]
                # While the workers start up, train the teacher here (under its lock, so
                # they wait for it and load it), with its epochs on the display.
                preparing("the teacher, while the workers start", monitor.display.console)
                study_teacher(s.space, s.num_classes, s.home, monitor.display)
                while self.members:
                    self._watch()
                    monitor.update()
                    time.sleep(POLL_SECONDS)
                monitor.update()
            except BaseException:
                self._stop()
                raise

    def _start(self, slot: Slot) -> _Member:
        s = self.session
        folder = workers_dir(s.home)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / f"{s.space.study_name}-worker{slot.index}.log"
        env = slot_env(slot, os.environ)
        env.update(
            {
                "SWEEP_HOME": str(s.home),
                "MLFLOW_TRACKING_URI": s.tracker.tracking_uri,
                POOL_PARENT_ENV: str(os.getpid()),
            }
        )
        command = [sys.executable, "-m", "sweep.cli", "worker", "--study", s.space.study_name]
        command += ["--storage", s.storage_url]
        with open(log, "ab") as out:
            # A session of its own: a terminal's Ctrl-C reaches the parent alone, which then
            # stops each worker once, in order, instead of all of them at once mid-write.
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=out, start_new_session=True
            )
        return _Member(slot, process, log)

    def _watch(self) -> None:
        """Handle workers that exited: done, stopped the study, or died."""
        for member in list(self.members):
            code = member.process.poll()
            if code is None:
                continue
            self.members.remove(member)
            if code == 0:
                continue
            if code == 2:  # a SweepError: the study must stop (the worker says why)
                raise SweepError(_last_line(member.log).removeprefix("sweep: error: "))
            self._bury(member, code, retry=True)
            if self.monitor is not None and self.monitor.done():
                continue
            self.restarts += 1
            if self.restarts > RESTARTS_PER_SLOT * len(self.slots):
                raise SweepError(
                    f"workers keep dying ({self.restarts} restarts); see {member.log}: "
                    f"{_last_line(member.log)}"
                )
            self.members.append(self._start(member.slot))

    def _bury(self, member: _Member, code: int, retry: bool) -> None:
        """Fail (and maybe retry) the trial a dead worker held; end its MLflow run."""
        s, pid = self.session, member.process.pid
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        held = read_held(s.home, pid)
        line = f"{member.slot.label} (pid {pid}) stopped with {how}"
        if held is not None:
            reason = f"its worker (pid {pid}) stopped with {how}"
            retries = self.max_retries if retry else 0
            with self.lock:
                released = release_trial(
                    s.study, s.storage, s.tracker, s.parent_id, held, reason, retries
                )
            clear_held(s.home, pid)
            if released.failed:
                line += f"; trial {held.number} failed"
                if released.retried:
                    line += " and queued again"
                elif retries:
                    line += f" (not queued again: its {retries} retries are used up)"
        if retry and self.monitor is not None:
            line += f"; log: {member.log}"
            self.monitor.display.note(line)

    def _stop(self) -> None:
        """Stop every worker (SIGINT, then SIGKILL after a grace period) and clean up."""
        for member in self.members:
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        try:
            for member in self.members:
                try:
                    member.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    member.process.kill()
                    member.process.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            for member in self.members:
                member.process.kill()
                member.process.wait()
        s = self.session
        for member in self.members:
            self._bury(member, member.process.returncode, retry=False)
        with self.lock:
            fail_orphans(s.study, s.storage, s.tracker, s.parent_id, s.home)
        self.members = []


def _last_line(log: Path) -> str:
    """The last non-empty line of a worker's log (its error message)."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
