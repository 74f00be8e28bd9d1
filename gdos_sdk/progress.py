"""Progress of long calls: a callback, or a tqdm bar when asked for (``progress=True``).

Long client calls (``upload_package``, ``deploy``, ``run_command``, ``run_batch``) take
``progress=``:

* ``None`` or ``False``: nothing is reported (the default);
* a callable: called with a :class:`Progress` each time the call moves on;
* ``True``: a tqdm bar (``tqdm.auto``: a widget in Jupyter when ipywidgets is there, text
  otherwise). tqdm is optional like pandas (``pip install 'gdos[notebook]'``); without it
  ``progress=True`` raises an ``ImportError`` that says so, before anything is sent.

Example::

    gdos.upload_package("dist/web-1.2.0.zip", progress=True)
    gdos.run_command(ids, "apt-get update", progress=lambda p: print(p.done, "/", p.total))
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import attrs

__all__ = ["Progress", "ProgressArg", "Reporter", "reporter", "upload_size"]


@attrs.frozen
class Progress:
    """Where a long call is: ``done`` of ``total`` ``unit`` (``total`` None: unknown).

    Parameters:
        done: how much is done (bytes sent, nodes answered, seconds stable ...).
        total: how much there is to do, when known.
        unit: what is counted: ``B``, ``node``, ``instance``, ``s``.
        message: a few words on the current step (``running, health check pending``).
    """

    done: float
    total: float | None
    unit: str
    message: str = ""

    def __repr__(self) -> str:
        total = "?" if self.total is None else f"{self.total:g}"
        text = f"Progress({self.done:g}/{total} {self.unit}"
        return text + (f", {self.message!r})" if self.message else ")")


ProgressArg = bool | Callable[[Progress], None] | None


class Reporter:
    """Sends :class:`Progress` to a callback and/or a tqdm bar; a no-op when neither."""

    def __init__(
        self,
        callback: Callable[[Progress], None] | None,
        bar_class: Any = None,
        description: str = "",
    ) -> None:
        self.callback = callback
        self.bar_class = bar_class
        self.description = description
        self.bar: Any = None
        self.last: Progress | None = None

    @property
    def active(self) -> bool:
        """Whether anyone is told (a callback or a bar)."""
        return self.callback is not None or self.bar_class is not None

    def __call__(self, done: float, total: float | None, unit: str, message: str = "") -> None:
        update = Progress(done=done, total=total, unit=unit, message=message)
        if update == self.last:
            return
        self.last = update
        if self.callback is not None:
            self.callback(update)
        if self.bar_class is not None:
            self._draw(update)

    def _draw(self, update: Progress) -> None:
        if self.bar is None:
            scale = update.unit == "B"
            self.bar = self.bar_class(
                total=update.total,
                unit=update.unit,
                unit_scale=scale,
                unit_divisor=1024 if scale else 1000,
                desc=self.description or None,
                leave=True,
            )
        if update.total is not None and self.bar.total != update.total:
            self.bar.total = update.total
        self.bar.n = update.done
        if update.message:
            self.bar.set_postfix_str(update.message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        """End the bar (it stays on screen)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def upload_size(source: Any) -> int | None:
    """Bytes an upload will send: of bytes, a file path, or what is left of a file object."""
    if isinstance(source, bytes | bytearray):
        return len(source)
    if isinstance(source, str | os.PathLike):
        return os.path.getsize(source)
    if isinstance(source, io.BytesIO):
        return len(source.getbuffer()) - source.tell()
    try:
        left: int = os.fstat(source.fileno()).st_size - source.tell()
        return left
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _tqdm() -> Any:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        raise ImportError(
            "progress=True draws a tqdm bar, and tqdm is not installed:"
            " pip install 'gdos[notebook]' (or pip install tqdm), or pass a callback"
        ) from None
    from tqdm import TqdmExperimentalWarning

    if importlib.util.find_spec("ipywidgets") is None:
        # No widgets: the text bar, rather than tqdm.auto's warning that they are missing.
        from tqdm.std import tqdm as text_bar

        return text_bar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmExperimentalWarning)
        from tqdm.auto import tqdm as auto_bar
    return auto_bar


@contextlib.contextmanager
def reporter(progress: ProgressArg, description: str = "") -> Iterator[Reporter]:
    """A :class:`Reporter` for a call's ``progress`` argument, closed when the call ends.

    Raises:
        ImportError: ``progress=True`` and tqdm is not installed.
        TypeError: ``progress`` is neither a bool, a callable nor None.
    """
    if progress is None or progress is False:
        found = Reporter(None)
    elif progress is True:
        found = Reporter(None, _tqdm(), description)
    elif callable(progress):
        found = Reporter(progress)
    else:
        raise TypeError(f"progress must be True, False, None or a callable, not {progress!r}")
    try:
        yield found
    finally:
        found.close()
