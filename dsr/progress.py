"""Progress lines with an ETA for long loops (training epochs, Lyapunov iterations)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """Logs ``<what> i/total  <detail>  ETA hh:mm:ss`` at most every ``interval_s`` seconds and
    at the last iteration.

    Parameters
    ----------
    log : logging.Logger
        Where the lines go (INFO).
    what : str
        Name of one iteration, e.g. ``"epoch"``.
    total : int
        Number of iterations of the whole loop.
    start : int
        Iterations already done before this run (resumed work); the ETA uses only this run's pace.
    interval_s : float
        Minimum seconds between two lines.
    """

    def __init__(
        self, log: logging.Logger, what: str, total: int, start: int = 0, interval_s: float = 10.0
    ) -> None:
        self.log, self.what, self.total, self.start = log, what, total, start
        self.interval_s = interval_s
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int, detail: Callable[[], str] | None = None) -> None:
        """After ``done`` iterations; ``detail`` is called only when a line is written."""
        now = time.perf_counter()
        if (now - self.last < self.interval_s and done < self.total) or not self.log.isEnabledFor(
            logging.INFO
        ):
            return
        self.last = now
        eta = (now - self.t0) / max(done - self.start, 1) * (self.total - done)
        extra = f"  {detail()}" if detail is not None else ""
        self.log.info(
            "%s %d/%d%s  ETA %s",
            self.what,
            done,
            self.total,
            extra,
            time.strftime("%H:%M:%S", time.gmtime(eta)),
        )
