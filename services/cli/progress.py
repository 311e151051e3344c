"""Progress of long work for people: a bar on a terminal, a few plain lines otherwise.

The CLI sends progress to standard error when standard output carries JSON, so
scripts read one JSON document and see nothing else.
"""

from __future__ import annotations

from typing import Any, TextIO

from tqdm import tqdm

PLAIN_STEP_PERCENT = 10
"""Without a terminal, a line each time the work passes another step of this size."""


class Progress:
    """Progress of one piece of work towards ``total`` (a percentage by default)."""

    def __init__(self, out: TextIO, label: str, *, total: float = 100.0, unit: str = "%") -> None:
        self._out = out
        self._label = label
        self._total = total
        self._unit = unit
        self._shown_step = -1
        self._bar: tqdm[Any] | None = None
        if out.isatty():
            self._bar = tqdm(
                total=total,
                desc=f"  {label}",
                file=out,
                unit=unit,
                leave=False,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed{postfix}",
            )

    def update(self, done: float, note: str = "") -> None:
        """The work has reached ``done`` of ``total``; ``note`` says where it is."""
        done = max(0.0, min(done, self._total))
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.refresh()
            return
        percent = 100.0 * done / self._total if self._total else 100.0
        step = int(percent // PLAIN_STEP_PERCENT)
        if step > self._shown_step:
            self._shown_step = step
            suffix = f" ({note})" if note else ""
            print(f"  {self._label}: {percent:.0f}%{suffix}", file=self._out, flush=True)

    def write(self, line: str) -> None:
        """Print ``line`` above the bar (or as is without a terminal)."""
        if self._bar is not None:
            self._bar.write(line, file=self._out)
        else:
            print(line, file=self._out, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
