"""What a run of either job did: one type, printed at the end and written as JSON (--summary-json)."""
from __future__ import annotations

import dataclasses
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from batch.core.readers import InputFiles, file_listing
from batch.core.timing import timed_phase

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class JobSummary:
    """The fields both jobs fill; each job's summary adds its own (batch/analysis/job.py, batch/download/job.py)."""

    job: str
    input_path: str
    status: str = "running"
    # What the reader found: None until the input has been read (a run that fails before
    # reading claims nothing about files: printed without them, null in JSON and batch_runs).
    input_files: int | None = None
    skipped_files: list[str] | None = None
    # {"count": n, "first": [names]}: part files of a streaming sink that its log does not name.
    uncommitted_files: dict[str, Any] | None = None
    # {"count": n, "first": [names]}: files lacking a required column that other files have.
    files_lacking_required_columns: dict[str, Any] | None = None
    # Per reason / per metric; a None count: not checked by this run (replays not dropped).
    rows_excluded: dict[str, int | None] | None = None
    values_nulled: dict[str, int] | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    error_message: str | None = None
    # What the run did not stop for but a person should read (a time zone left on its
    # default, a line that matches nothing, a table published empty): one sentence each,
    # logged once, printed, stored in batch_runs and shown by the report.
    warnings: list[str] = field(default_factory=list)

    def phase(self, name: str) -> AbstractContextManager[None]:
        return timed_phase(self.phase_seconds, name)

    def record_input(self, input_files: InputFiles) -> None:
        """What the reader found under the input path."""
        self.input_files = sum(map(len, input_files.groups))
        self.skipped_files = list(input_files.skipped)
        self.uncommitted_files = file_listing(input_files.uncommitted)
        self.files_lacking_required_columns = file_listing(input_files.lacking_required)

    def warn(self, message: str) -> None:
        """Log `message` and keep it for the summary, batch_runs and the report."""
        log.warning("%s", message)
        self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
