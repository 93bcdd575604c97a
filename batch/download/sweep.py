"""What downloads killed outright (SIGKILL, a lost machine) left beside their target."""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def sweep_leftovers(target: Path) -> tuple[str, ...]:
    """Remove what killed earlier downloads of `target` left beside it; the names removed.

    Only the writer's own names count: the temporary file `.NAME.<pid>-<12 hex>.tmp` and
    the parts folder `.NAME.parts-<pid>-<12 hex>` of a process that no longer runs (a
    download still running, or any process with that pid, keeps them). A SIGKILL leaves
    them: no `finally` runs. Nothing else is ever deleted.
    """
    name = re.escape(re.sub(r"[^A-Za-z0-9._-]", "_", target.name))
    temporary = re.compile(rf"\.{name}\.(\d+)-[0-9a-f]{{12}}\.tmp")
    parts = re.compile(rf"\.{name}\.parts-(\d+)-[0-9a-f]{{12}}")
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return ()
    for entry in entries:
        for pattern, is_kind in ((temporary, entry.is_file), (parts, entry.is_dir)):
            match = pattern.fullmatch(entry.name)
            if match is None or not is_kind(follow_symlinks=False) \
                    or _process_exists(int(match.group(1))):
                continue
            try:
                if pattern is parts:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError as error:
                log.warning("cannot remove %s, left by a killed download: %s", entry.path,
                            error.strerror)
                continue
            log.info("removed %s, left by a killed download (pid %s)", entry.path, match.group(1))
            removed.append(entry.name)
    return tuple(sorted(removed))


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True
