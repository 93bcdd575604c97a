"""The one way this project replaces a small file: readers see the previous file or the
complete new one, and a failure (a full disk, a read-only folder, a stop) leaves nothing behind.

Standard library only: batch/launcher/jobrun.py uses it in the Spark container too, where
it is copied beside jobrun.py.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Files others read (summaries, reports, run records): readable by all, like a file the
# user's shell would create; mkstemp's 0600 would hide them from a monitoring user.
READABLE_BY_ALL = 0o644


def write_atomically(path: Path, content: str | bytes, mode: int = READABLE_BY_ALL) -> None:
    """Replace `path` with `content` (text as UTF-8), creating its folder if needed.

    The content goes to a hidden temporary file beside `path`, flushed to disk, then renamed
    over it. On any failure, a stop (KeyboardInterrupt) included, the temporary file is
    removed and the error raised: the previous file, if any, is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
