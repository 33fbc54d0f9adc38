"""Errors raised inside the user's own code: their traceback frames, never cnnlab's.

A bug in a user's model, dataset, loss, augmentation or callback is theirs to fix, so they
need to see where it is: the frames of their files (the ones cnnlab imported, and modules
those imported from their folders), then one line naming what failed. cnnlab's and the
libraries' frames in between are left out: they say nothing about the user's bug.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from cnnlab.errors import UserError, one_line

_PACKAGE = str(Path(__file__).resolve().parents[1])  # cnnlab's own files are never the user's
_USER_FILES: set[str] = set()  # resolved paths of every file counted as the user's code


def add_user_file(path: str) -> None:
    _USER_FILES.add(str(Path(path).resolve()))


def is_user_file(path: str) -> bool:
    if path in _USER_FILES:
        return True
    try:
        return str(Path(path).resolve()) in _USER_FILES
    except OSError:
        return False


class UserCodeError(UserError):
    """The user's code raised: one line (what failed, the error) and their traceback frames in
    `details`, printed above the line by the command (exit code 2, like other bad input)."""

    def __init__(self, message: object = "", details: str = ""):
        super().__init__(message)
        self.details = details


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of the exception's traceback that lie in user files (chained causes included)."""
    frames: list[traceback.FrameSummary] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        frames = [f for f in traceback.extract_tb(e.__traceback__) if is_user_file(f.filename)] + frames
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return frames


def describe(exc: BaseException) -> str:
    """'ValueError: bad value' (a SyntaxError with its file and line)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} ({Path(exc.filename).name}, line {exc.lineno})"
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def user_code_error(exc: BaseException, what: str) -> UserCodeError:
    """`what` (e.g. 'model.name: nets.py:TinyVGG failed on a 2x3x32x32 batch') with the error,
    and the user's frames as the traceback to show."""
    frames = user_frames(exc)
    lines = ["Traceback (your code only; cnnlab's frames left out):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return UserCodeError(f"{what}: {describe(exc)}", "".join(lines).rstrip("\n"))


def blame(exc: BaseException, what: str) -> UserCodeError | None:
    """A UserCodeError when the exception was raised in the user's code (one of its frames is
    in a user file), else None: cnnlab's own bugs keep their full traceback."""
    if isinstance(exc, UserCodeError):
        return exc
    if isinstance(exc, (UserError, KeyboardInterrupt)) or not user_frames(exc):
        return None
    return user_code_error(exc, what)


def add_code_of(obj: object) -> None:
    """Count the files that define obj's code (a function, a class and its methods, an instance's
    class) as the user's, so its frames show even when it lives in a notebook cell."""
    import inspect

    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj)
    if inspect.isfunction(target):
        _USER_FILES.add(target.__code__.co_filename)
        return
    for klass in getattr(target, "__mro__", ())[:-1]:
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)
            code = getattr(fn, "__code__", None)
            if code is not None and "site-packages" not in code.co_filename \
                    and not code.co_filename.startswith(_PACKAGE):
                _USER_FILES.add(code.co_filename)
