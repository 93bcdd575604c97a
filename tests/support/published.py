"""Raw readings written as the contract types them, and the published tables checked against
the independent SQL computation of tests/independent.py."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg2 import sql

from batch.core.thresholds import Thresholds
from batch.analysis.catalog import build_catalog
from batch.core.postgres import PostgresTarget
from tests import independent
from tests.rawdata import METRICS
from tests.support.jobs import admin_connection, query

TABLES = tuple(independent.TABLE_KEYS)
VIEW = "latest_complete_week_by_classroom"
# Everything a run stages and publishes: the statistics (TABLES) and the indoor-air
# compliance tables (checked by tests/test_iaq_analysis.py), in the order they are written.
CATALOG = build_catalog(Thresholds(), "UTC")
STAGED = tuple(table.name for table in CATALOG.published_tables)
VIEWS = tuple(view.name for view in CATALOG.views)
# The key of each published table, and of each view the key of the table it reads (one row per
# classroom or device of that table: every view has those columns, and they identify its rows).
PUBLISHED_KEYS = {table.name: table.key for table in CATALOG.published_tables}
PUBLISHED_KEYS.update({view.name: PUBLISHED_KEYS[view.reads[0]] for view in CATALOG.views})


def write_rows(folder: Path, rows: Sequence[dict[str, Any]], name: str = "part-0.parquet") -> Path:
    """`rows` (the columns of tests/independent.RAW_COLUMNS) as one Parquet file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "DevEui": pa.array([r["DevEui"] for r in rows], pa.string()),
        "sendtime": pa.array([r["sendtime"] for r in rows], pa.timestamp("us", tz="UTC")),
        "institute": pa.array([r["institute"] for r in rows], pa.string()),
        "classroom": pa.array([r["classroom"] for r in rows], pa.string()),
    }
    for metric in METRICS:  # light_level too: a double in the contract, fractions kept
        columns[metric] = pa.array([None if r[metric] is None else float(r[metric]) for r in rows],
                                   pa.float64())
    pq.write_table(pa.table(columns), folder / name)
    return folder


def published(conn: Any, schema: str, with_view: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every published table (and the view), as a dashboard reads them.

    Leave the view out while a run is held inside its swap: replacing it locks it exclusively.
    """
    tables = {table: independent.published_table(conn, schema, table) for table in TABLES}
    if with_view:
        tables[VIEW] = independent.fetch_dicts(
            conn, sql.SQL("SELECT * FROM {}.{} ORDER BY institute, classroom").format(
                sql.Identifier(schema), sql.Identifier(VIEW)).as_string(conn))
    return tables


def published_catalog(conn: Any, schema: str) -> dict[str, list[dict[str, Any]]]:
    """Every published table and view of the catalog (not batch_runs, nor the job's internal
    tables), rows in the order of PUBLISHED_KEYS."""
    return {name: independent.fetch_dicts(conn, sql.SQL("SELECT * FROM {}.{} ORDER BY {}").format(
                sql.Identifier(schema), sql.Identifier(name),
                sql.SQL(", ").join(map(sql.Identifier, key))).as_string(conn))
            for name, key in PUBLISHED_KEYS.items()}


def assert_published_equals_independent(target: PostgresTarget, rows: Sequence[dict[str, Any]],
                                        timezone: str = "UTC", drop_replays: bool = False) -> None:
    """Every published table equals the statistics PostgreSQL computes from `rows` itself."""
    reference = f"{target.schema}_expected"
    with contextlib.closing(admin_connection(target)) as conn:
        query(conn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(reference)))
        independent.load_raw(conn, reference, rows)
        try:
            for table in TABLES:
                independent.assert_rows_close(
                    independent.published_table(conn, target.schema, table),
                    independent.expected_table(conn, reference, table, timezone, drop_replays))
        finally:
            query(conn, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(reference)))
