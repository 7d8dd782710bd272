"""The line between a user's mistake and a bug.

A `UserError` (a bad value, a bad file, a missing input) is reported as one line naming the file
or key and exits with `EXIT_USER_ERROR`; anything else is a bug and keeps its traceback
(`EXIT_BUG`). `GENSR_DEBUG=1` shows the traceback for user errors too. Imports nothing heavy:
the torch-free `gensr upscale` uses it.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake the user can fix: the message names the file or key, the value and what is allowed."""


class MissingInputError(UserError, FileNotFoundError):
    """Something a stage reads is absent: the prepared split, a benchmark folder, a model file."""


class BadInputError(UserError, ValueError):
    """Something a stage reads or is told is unusable: a setting, a metrics file, an LPIPS model."""


def one_line(message: object) -> str:
    """A message's lines joined into one (after a full stop a space is enough)."""
    text = re.sub(r"(?<=[.:;!?])\s*\n\s*", " ", str(message).strip())
    return re.sub(r"\s*\n\s*", "; ", text)


def entry_point(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """The one wrapper every command uses (pipelines/*.py, `gensr <command>`): main(argv) -> exit code.

    UserError -> `error: <one line>` on stderr, EXIT_USER_ERROR; a missing third-party module (the
    wrong interpreter) -> one line naming it and this Python, EXIT_USER_ERROR; Ctrl-C ->
    EXIT_INTERRUPTED; anything else is a bug -> its traceback, EXIT_BUG (never a one-liner that
    hides where it broke).
    """

    @functools.wraps(main)
    def run(argv: list[str]) -> int:
        try:
            return main(argv)
        except UserError as e:
            if os.environ.get("GENSR_DEBUG", "") not in ("", "0"):
                traceback.print_exc()
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except KeyboardInterrupt as e:
            print("interrupted" + (f": {one_line(e)}" if str(e) else ""), file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except Exception as e:
            if isinstance(e, ModuleNotFoundError) and (e.name or "gensr").split(".")[0] != "gensr":
                # A library the command needs is not in this Python: most often `dvc repro` run
                # outside the project's environment, so the stages' `python` is another interpreter.
                # (A missing part of gensr itself stays a bug: a broken install keeps its traceback.)
                if os.environ.get("GENSR_DEBUG", "") not in ("", "0"):
                    traceback.print_exc()
                print(f"error: Python module '{e.name}' is not installed in {sys.executable}: run gensr, dvc "
                      "and the pipelines from the environment that has it (`. .venv/bin/activate` after "
                      "`make repro`), or install it there (`pip install '.[train]'` for the pipeline)",
                      file=sys.stderr, flush=True)
                return EXIT_USER_ERROR
            traceback.print_exc()
            print("error: the above is a bug in gensr, not a problem with your input; please report it "
                  "with the traceback", file=sys.stderr, flush=True)
            return EXIT_BUG

    return run
