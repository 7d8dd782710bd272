"""data.on_bad_image: which photos prepare leaves out, and the `skipped` block of the manifests.

A photo that cannot make a pair (unreadable, too small, a duplicate, ...) fails the stage or is
skipped with a warning and counted by kind; entries that are no photo at all are only listed.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from gensr.data import sources
from gensr.data.sources import DataError
from gensr.io import BadImageError

log = logging.getLogger("gensr.prepare")

# reason text -> the counter key in the manifests' `skipped.by_reason` (first match wins)
_REASON_KINDS = (
    ("is a folder", "folder named like an image"), ("symbolic link to a folder", "link to a folder"),
    ("broken or looping", "broken or looping link"), ("not a regular file", "not a regular file"),
    ("cannot read", "unreadable"), ("cannot list", "unreadable"), ("other file type", "other file type"),
    ("zero-byte", "zero-byte file"), ("not an image", "not an image"),
    ("corrupt or truncated", "corrupt or truncated"), ("decompression bomb", "too many pixels"),
    ("exceeds the limit", "too many pixels"), ("too small", "too small"),
    ("duplicate of", "duplicate"), ("does not exist", "missing file"),
    ("unsupported image mode", "unsupported mode"), ("values span", "values out of range"),
    ("NaN or infinite", "values out of range"),
)


def reason_kind(reason: str) -> str:
    return next((kind for key, kind in _REASON_KINDS if key in reason), "other")


class BadInputs:
    """Applies data.on_bad_image: `fail` raises at the first bad photo, `skip` warns and counts.
    Entries that are no photo at all (other file types) are listed, never fatal, warned once."""

    def __init__(self, policy: str, where: Path | None):
        if policy not in ("skip", "fail"):
            raise DataError(f"data.on_bad_image must be skip or fail, got {policy!r}")
        self.policy, self.where, self.skipped = policy, where, []

    def add(self, s: sources.Skipped) -> None:
        path = self.where / s.source if self.where is not None else s.source
        if not s.bad:
            self.skipped.append(s)
            return
        if self.policy == "fail":
            raise BadImageError(path, f"{s.reason} (data.on_bad_image=fail; use skip to leave it out)")
        log.warning("skipping %s: %s", path, s.reason)
        self.skipped.append(s)

    def warn_not_photos(self) -> None:
        others = sorted(s.source for s in self.skipped if not s.bad)
        if others:
            log.warning("%d file(s) in %s are not images and were left out (listed in the manifests' "
                        "`skipped`): %s%s", len(others), self.where, ", ".join(others[:5]),
                        ", ..." if len(others) > 5 else "")

    def summary(self) -> dict:
        return {
            "count": len(self.skipped),
            "by_reason": dict(sorted(Counter(reason_kind(s.reason) for s in self.skipped).items())),
            "files": [s.as_dict() for s in sorted(self.skipped, key=lambda s: s.source)],
        }
