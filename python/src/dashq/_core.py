"""What every call shares: the library's errors as exceptions, C strings kept
alive for a call, and the progress/notes callbacks (tqdm when installed)."""
from __future__ import annotations

import logging
import os
import warnings
from typing import Callable, Optional, Union

from ._dashq_cffi import ffi, lib

log = logging.getLogger("dashq")


class DashqError(Exception):
    """A call of the C library failed; str(e) is its message (file, tensor, what was wrong)."""

    def __init__(self, message: str, status: str = "error"):
        super().__init__(message)
        self.message = message
        self.status = status


class DashqIOError(DashqError, OSError):
    """A file could not be opened, read, mapped or written."""


class FormatError(DashqError, ValueError):
    """A file is malformed: bad magic, a lying header, truncated."""


class UnsupportedError(DashqError, ValueError):
    """Well formed, but not something dashq handles (a dtype, a model type)."""


class DashqMemoryError(DashqError, MemoryError):
    """An allocation failed or a size would overflow."""


class ArgumentError(DashqError, ValueError):
    """An argument is invalid: a method, an option, a shape, a value out of range."""


class NumericError(DashqError, ArithmeticError):
    """NaN or Inf in weights, statistics or activations; a factorization failed."""


class Cancelled(DashqError):
    """The progress callback asked to stop."""


class DashqWarning(UserWarning):
    """A note of the library that the result may not be what was meant."""


_ERRORS = {
    lib.DQ_ERR_IO: DashqIOError,
    lib.DQ_ERR_FORMAT: FormatError,
    lib.DQ_ERR_UNSUPPORTED: UnsupportedError,
    lib.DQ_ERR_NOMEM: DashqMemoryError,
    lib.DQ_ERR_ARG: ArgumentError,
    lib.DQ_ERR_NUMERIC: NumericError,
    lib.DQ_ERR_CANCELLED: Cancelled,
}


def new_error():
    return ffi.new("dq_error *")


def check(status: int, err) -> None:
    """Raises the exception of a failed call with the library's message."""
    if status == lib.DQ_OK:
        return
    msg = ffi.string(err.msg).decode("utf-8", "replace") or ffi.string(lib.dq_status_name(status)).decode()
    raise _ERRORS.get(status, DashqError)(msg, ffi.string(lib.dq_status_name(status)).decode())


class CStrings:
    """C copies of Python strings and paths, alive as long as this object."""

    def __init__(self):
        self._keep = []

    def __call__(self, s: Optional[Union[str, os.PathLike]]):
        if s is None:
            return ffi.NULL
        b = os.fsencode(s)  # str, bytes or a path; a non-UTF-8 file name round-trips
        if b"\0" in b:
            raise ArgumentError(f"{s!r} contains a NUL character")
        c = ffi.new("char[]", b)
        self._keep.append(c)
        return c


def options_text(options) -> Optional[str]:
    """A method's options as the library reads them: "act_order,percdamp=0.05".
    Takes that text, or a dict {"act_order": True, "percdamp": 0.05}
    (True: the flag; False and None: left at the method's default)."""
    if options is None or isinstance(options, str):
        return options
    parts = []
    for k, v in options.items():
        if v is None or v is False:
            continue
        parts.append(k if v is True else f"{k}={v}")
    return ",".join(parts)


ProgressFn = Callable[[str, int, int], Optional[bool]]


class Progress:
    """The library's progress and notes for one call. progress: True (a tqdm
    bar per stage when tqdm is installed, else nothing), False, or a callable
    (stage, done, total) that may return a false value (False, 0) to cancel;
    None goes on. Notes become DashqWarning warnings or log records of the
    "dashq" logger. An exception raised in a callback, or by a warning filter
    set to "error", cancels the job and is raised again afterwards."""

    def __init__(self, progress: Union[bool, ProgressFn, None]):
        self.fn = progress if callable(progress) else None
        self.tqdm = None
        if progress is True:
            try:
                from tqdm.auto import tqdm

                self.tqdm = tqdm
            except ImportError:
                pass
        self.bar = None
        self.stage = None
        self.exc: Optional[BaseException] = None
        self.handle = ffi.new_handle(self)

    def install(self, field) -> None:
        """Points a dq_progress field of a params struct at this object."""
        field.fn = lib._dq_progress_cb
        field.note = lib._dq_note_cb
        field.user = self.handle

    def report(self, stage: str, done: int, total: int) -> bool:
        if self.fn is not None:
            r = self.fn(stage, done, total)
            return r is None or bool(r)
        if self.tqdm is not None:
            if self.bar is None or stage != self.stage:
                self.close()
                self.bar = self.tqdm(total=total, desc=stage, unit="", leave=False)
                self.stage = stage
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.close()
        return True

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self, status: int, err) -> None:
        """After the call: close the bar, raise a callback's exception, or the library's error."""
        self.close()
        if self.exc is not None:
            raise self.exc
        check(status, err)


@ffi.def_extern()
def _dq_progress_cb(stage, done, total, user):
    p = ffi.from_handle(user)
    if p.exc is not None:
        return False
    try:
        return bool(p.report(ffi.string(stage).decode(), int(done), int(total)))
    except BaseException as e:  # noqa: BLE001 - raised again by finish() once the C call has returned
        p.exc = e
        return False


@ffi.def_extern()
def _dq_note_cb(warning, msg, user):
    p = ffi.from_handle(user)
    text = ffi.string(msg).decode("utf-8", "replace")
    try:
        if warning:
            warnings.warn(text, DashqWarning, stacklevel=3)  # the caller of quantize/evaluate
        else:
            log.info(text)
    except BaseException as e:  # noqa: BLE001 - warnings as errors: the next progress report cancels, finish() raises
        if p.exc is None:
            p.exc = e
