"""Where the real FreeSWITCH 1.10.12 captures are: `tests/captures/` (a copy of
`../shared/freeswitch-captures`, kept in the repository so a fresh clone tests itself);
`RATER_CAPTURES_DIR` points elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

CAPTURES_DIR = Path(os.environ.get("RATER_CAPTURES_DIR") or Path(__file__).parent / "captures")


def captures_dir() -> Path:
    """The captures directory; a missing one is a failure, not a skip."""
    if not (CAPTURES_DIR / "esl_sipp_plain.raw.in").is_file():
        raise FileNotFoundError(f"no FreeSWITCH captures at {CAPTURES_DIR} "
                                "(set RATER_CAPTURES_DIR)")
    return CAPTURES_DIR
