"""The line between a user's mistake and a bug.

A `UserError` (a bad value, a bad file, a missing input) is reported as one line naming the file
or key and exits with `EXIT_USER_ERROR`; anything else is a bug and keeps its traceback
(`EXIT_BUG`). `GENSR_DEBUG=1` shows the traceback for user errors too. Imports nothing heavy:
the torch-free `gensr upscale` uses it.
"""
from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake the user can fix: the message names the file or key, the value and what is allowed."""
