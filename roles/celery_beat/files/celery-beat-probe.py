"""Run Celery Beat and record when it last sent a task, for an alert on a silent Beat.

    python celery-beat-probe.py --liveness-file=PATH [celery arguments: -A proj beat ...]

runs the `celery` command with the arguments that follow, in this process, after two handlers
are connected to Celery's signals:
- `beat_init`: Beat has started; the shortest interval of its schedule is computed;
- `after_task_publish`: Beat sent a task (in Beat's process every send is a periodic task's).

Each writes PATH (JSON, replaced atomically):
    {"last_sent": <epoch seconds>, "shortest_interval": <seconds or null>, "entries": <count>}
`last_sent` is the time of the last send; at start it keeps the previous file's value (a Beat that
restarts in a loop without sending stays silent), or the start time if there is none.
`shortest_interval` is the shortest time between two runs of any schedule entry: an interval
entry's own, or for a crontab entry the shortest gap between its next runs (a solar entry is left out). The scheduler's
exporter (roles/celery_heartbeat) serves both; CeleryBeatSilent fires when Beat has sent nothing for
twice the shortest interval. Works with any scheduler class (file, django-celery-beat's database).
"""

import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from itertools import pairwise

from celery import signals

RUNS = 8  # next runs of a crontab entry examined for the shortest gap


def log(message: str) -> None:
    print(f"beat-probe: {message}", file=sys.stderr, flush=True)


def entry_interval(schedule) -> float | None:
    """Seconds between two runs of one schedule entry: an interval's own; for a crontab, the shortest
    gap between its next runs; None for a schedule that tells neither (solar)."""
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    if isinstance(run_every, (int, float)):
        return float(run_every)
    remaining_delta = getattr(schedule, "remaining_delta", None)
    if remaining_delta is None:
        return None
    runs = []
    last = schedule.now()
    for _ in range(RUNS):
        # The first run after `last`: crontab.remaining_delta gives `last` (local) and the relative
        # delta that moves it to that run, exactly (remaining_estimate() rounds through now()).
        start, delta, _now = remaining_delta(last)
        following = start + delta
        if following <= last:
            break
        runs.append(following)
        last = following
    gaps = [(b - a).total_seconds() for a, b in pairwise(runs)]
    return min(gaps) if gaps else None


def shortest_interval(scheduler) -> tuple[float | None, int]:
    entries = list(scheduler.schedule.values())
    intervals = []
    for entry in entries:
        try:
            seconds = entry_interval(entry.schedule)
        except Exception as error:  # an exotic schedule class: leave it out
            log(f"{entry.name}: no interval ({error!r})")
            continue
        if seconds is not None and seconds > 0:
            intervals.append(seconds)
    return (min(intervals) if intervals else None), len(entries)


class Liveness:
    def __init__(self, path: str) -> None:
        self.path = path
        self.state = {"last_sent": None, "shortest_interval": None, "entries": 0}
        self.scheduler = None

    def write(self) -> None:
        directory = os.path.dirname(self.path) or "."
        try:
            fd, temporary = tempfile.mkstemp(prefix=".liveness.", dir=directory)
            with os.fdopen(fd, "w") as handle:
                json.dump(self.state, handle)
            os.chmod(temporary, 0o640)
            os.replace(temporary, self.path)
        except OSError as error:  # never stop Beat for its probe
            log(f"cannot write {self.path}: {error!r}")

    def refresh_interval(self) -> None:
        if self.scheduler is None:
            return
        try:
            interval, entries = shortest_interval(self.scheduler)
        except Exception as error:  # the database scheduler's store is away: keep the last one
            log(f"schedule: {error!r}")
            return
        self.state.update(shortest_interval=interval, entries=entries)

    def on_beat_init(self, sender=None, **_) -> None:
        self.scheduler = getattr(sender, "scheduler", None)
        try:
            with open(self.path) as handle:
                self.state["last_sent"] = float(json.load(handle)["last_sent"])
        except (OSError, ValueError, KeyError, TypeError):
            self.state["last_sent"] = time.time()
        self.refresh_interval()
        self.write()
        log(
            f"{self.state['entries']} entries, shortest interval "
            f"{self.state['shortest_interval']} s; writing {self.path}"
        )

    def on_publish(self, **_) -> None:
        self.state["last_sent"] = time.time()
        # A database schedule changes while Beat runs: read it again after each send.
        self.refresh_interval()
        self.write()


def main() -> None:
    arguments = sys.argv[1:]
    if not arguments or not arguments[0].startswith("--liveness-file="):
        sys.exit("usage: celery-beat-probe.py --liveness-file=PATH -A proj beat [options]")
    liveness = Liveness(arguments[0].split("=", 1)[1])
    signals.beat_init.connect(liveness.on_beat_init, weak=False)
    signals.after_task_publish.connect(liveness.on_publish, weak=False)
    sys.argv = ["celery", *arguments[1:]]
    from celery.__main__ import main as celery_main

    celery_main()


if __name__ == "__main__":
    main()
