"""Progress for long runs (convert, verify, inspect, training epochs), built on rich.

`ProgressBar` draws a live rich bar when its stream is a terminal, and a plain line at
most every few seconds (plus one final line) when it is not, so logs of batch jobs stay
readable. Callers update it once per batch: an update only adds numbers and reads the
clock; drawing is throttled.
"""

from __future__ import annotations

import math
import sys
import time

from gntkit.errors import GntkitError

# A terminal redraw costs about 0.1-1 ms; ten a second is smooth and stays far below 1% of a run.
TERMINAL_INTERVAL = 0.1
# Plain lines go to log files: one every few seconds says the run is alive without flooding them.
PLAIN_INTERVAL = 5.0
_BYTE_UNITS = ("B", "bytes")


def _amount(value: float, unit: str) -> str:
    """A count in its unit: bytes as kB/MB/GB, whole counts with thousands separators."""
    if unit in _BYTE_UNITS:
        from rich.filesize import decimal

        return decimal(int(value))
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _rate(per_second: float | None, unit: str) -> str:
    if per_second is None or not math.isfinite(per_second):
        return f"? {unit}/s" if unit not in _BYTE_UNITS else "? B/s"
    if unit in _BYTE_UNITS:
        return f"{_amount(per_second, unit)}/s"
    return f"{per_second:,.0f} {unit}/s" if per_second >= 10 else f"{per_second:,.2f} {unit}/s"


def _duration(seconds: float | None) -> str:
    """h:mm:ss, or '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _field(name: str, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name}={value}"
    if isinstance(value, int):
        return f"{name}={value:,}"
    return f"{name}={value:.4g}"


def format_status(completed: float, total: float | None, elapsed: float, unit: str, fields: dict,
                  rate: float | None = None, eta: float | None = None) -> str:
    """One status line: done (of total), percent, rate, ETA or elapsed, then the fields.

    Args:
        completed: work done, in `unit`.
        total: all the work, or None when unknown (no percent, no ETA).
        elapsed: seconds since the start.
        unit: what is counted ("samples", "bytes", "shards", ...).
        fields: extra name=value pairs to show (loss, samples, ...).
        rate: units per second; None: the average since the start.
        eta: seconds left; None: from the rate.

    Returns:
        The line, without a newline.
    """
    if rate is None:
        rate = completed / elapsed if elapsed > 0 else None
    count = f"{_amount(completed, unit)}/{_amount(total, unit)}" if total is not None else _amount(completed, unit)
    parts = [count if unit in _BYTE_UNITS else f"{count} {unit}"]
    if total is not None:
        fraction = min(completed / total, 1.0) if total > 0 else 1.0
        parts.append(f"{100 * fraction:5.1f}%")
    parts.append(_rate(rate, unit))
    if total is not None and completed < total:
        if eta is None and rate:
            eta = (total - completed) / rate
        parts.append(f"ETA {_duration(eta)}")
    else:
        parts.append(f"elapsed {_duration(elapsed)}")
    parts.extend(_field(name, value) for name, value in fields.items())
    return "  ".join(parts)


def _check_number(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise GntkitError(f"progress: expected {name} to be a finite number >= 0{' or None' if allow_none else ''}, found {value!r}.")


class ProgressBar:
    """A progress display for one long run: rate, percent and ETA; use it as a context manager.

    On a terminal it is a live rich bar; on any other stream (a log file, a pipe, CI) it
    writes a plain line at most every `PLAIN_INTERVAL` seconds and one final line on
    close(). `enabled=False` (a command's --quiet) prints nothing.

    Args:
        total: all the work in `unit`, or None when unknown (then no percent or ETA).
        unit: what is counted, shown after the numbers ("samples", "bytes", "shards", ...);
            "bytes" or "B" are shown as kB/MB/GB.
        description: a short label shown first ("convert", "verify", "epoch 3").
        enabled: False: print nothing at all.
        delay: draw nothing until this many seconds have passed (as tqdm's delay): runs that
            end sooner print nothing, not even the final line.
        stream: a text stream (default sys.stderr) or a rich Console; a live bar is drawn
            only when it is a terminal.

    Raises:
        GntkitError: total or delay is negative or not a number.
    """

    def __init__(self, total: float | None, *, unit: str = "samples", description: str = "", enabled: bool = True, stream=None,
                 delay: float = 0.0):
        _check_number("total", total, allow_none=True)
        _check_number("delay", delay)
        if not isinstance(unit, str) or not unit:
            raise GntkitError(f"progress: expected unit to be a non-empty string, found {unit!r}.")
        self.total = total
        self.unit = unit
        self.description = str(description)
        self.enabled = bool(enabled)
        self.completed = 0.0
        self.fields: dict = {}
        self.started = time.monotonic()
        self.delay = delay
        self._closed = False
        self._next_draw = 0.0
        self._plain_drawn = None  # (completed, fields) of the last plain line: the final line does not repeat it
        self._rich = None  # the rich.progress.Progress once the live bar is drawn
        self._task = None
        if not self.enabled:
            self._console = None
            return
        from rich.console import Console  # rich comes with typer; imported only when drawing

        stream = sys.stderr if stream is None else stream
        self._console = stream if isinstance(stream, Console) else Console(file=stream)
        self.terminal = self._console.is_terminal
        # The first plain line waits a full interval: short runs print only their final line.
        self._next_draw = self.started + max(delay, 0.0 if self.terminal else PLAIN_INTERVAL)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, advance: float = 0, *, completed: float | None = None, **fields) -> None:
        """Record progress; draws only when the last drawing is old enough.

        Args:
            advance: work done since the last update, in the bar's unit.
            completed: all work done so far (replaces the count; then advance is added to it).
            **fields: values to show beside the bar (loss=0.31, samples=12000); the latest wins.

        Raises:
            GntkitError: advance or completed is negative or not a number, or the bar is closed.
        """
        if not self.enabled:
            return
        if self._closed:
            raise GntkitError("progress: expected update() before close(), found the bar already closed.")
        if completed is not None:
            _check_number("completed", completed)
            self.completed = completed
        if advance:
            _check_number("advance", advance)
            self.completed += advance
        if fields:
            self.fields.update(fields)
        now = time.monotonic()
        if now >= self._next_draw:
            self._draw(now, final=False)

    def settle(self) -> None:
        """The work turned out to be what was done so far (fewer samples than planned, say a
        dropped last batch): the total becomes the count, so the final state reads 100%."""
        if not self.enabled or self._closed:
            return
        self.total = self.completed
        if self._rich is not None:
            self._rich.update(self._task, total=self.total)

    def close(self) -> None:
        """Draw the final state (the last plain line, or the finished bar) and stop; safe to call twice.

        A plain line already written for the final state is not written again."""
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        repeat = self.enabled and not self.terminal and self._plain_drawn == (self.completed, self.fields)
        if self.enabled and now - self.started >= self.delay and not repeat:
            self._draw(now, final=True)
        if self._rich is not None:
            self._rich.stop()

    def _draw(self, now: float, final: bool) -> None:
        if self.terminal:
            self._next_draw = now + TERMINAL_INTERVAL
            self._draw_live()
            return
        self._next_draw = now + PLAIN_INTERVAL
        line = format_status(self.completed, self.total, now - self.started, self.unit, self.fields)
        if self.description:
            line = f"{self.description}: {line}"
        self._plain_drawn = (self.completed, dict(self.fields))
        file = self._console.file
        file.write(line + "\n")
        file.flush()

    def _draw_live(self) -> None:
        if self._rich is None:
            from rich.progress import BarColumn, Progress, TextColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), _status_column(self.unit),
                                  console=self._console, refresh_per_second=1 / TERMINAL_INTERVAL)
            self._task = self._rich.add_task(self.description, total=self.total)
            self._rich.start()
        self._rich.update(self._task, completed=self.completed, fields=dict(self.fields))


def _status_column(unit: str):
    """A rich column worded as the plain lines are (rich is imported only when a live bar is drawn)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class StatusColumn(ProgressColumn):
        def render(self, task) -> Text:
            # rich's windowed speed follows changes of rate; before two updates there is none.
            rate = task.speed
            eta = task.time_remaining if task.total is not None and rate else None
            fields = task.fields.get("fields", {})
            return Text(format_status(task.completed, task.total, task.elapsed or 0.0, unit, fields, rate=rate, eta=eta))

    return StatusColumn()
