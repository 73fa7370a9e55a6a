"""Where Debian's libfaketime is, for tests that run a process on another date."""

from __future__ import annotations

import glob
import os


def libfaketime() -> str | None:
    """The libfaketime shared object ($LIBFAKETIME, else Debian's path), or None."""
    given = os.environ.get("LIBFAKETIME")
    if given:
        return given if os.path.isfile(given) else None
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None
