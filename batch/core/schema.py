"""The vocabulary of the catalog (batch/analysis/catalog.py): column types, columns, tables and views.

A published table is described once - name, key, columns with type, unit and comment, and
what builds its rows - and the PostgreSQL DDL, comments, staging tables, swap, schema
evolution, row counts and the README table are all derived from that description.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from psycopg2 import sql
from pyspark.sql import types as T


@dataclass(frozen=True)
class ColumnType:
    """A column's type in PostgreSQL (as `format_type` spells it) and in Spark."""

    sql: str
    spark: T.DataType | None = None  # None: never written by Spark (run records)
    # The type as written in CREATE TABLE when it differs (bigserial is stored as bigint).
    ddl: str | None = None

    @property
    def create(self) -> str:
        return self.ddl or self.sql


TEXT = ColumnType("text", T.StringType())
INTEGER = ColumnType("integer", T.IntegerType())
BIGINT = ColumnType("bigint", T.LongType())
DOUBLE = ColumnType("double precision", T.DoubleType())
BOOLEAN = ColumnType("boolean", T.BooleanType())
DATE = ColumnType("date", T.DateType())
TIMESTAMPTZ = ColumnType("timestamp with time zone", T.TimestampType())
JSONB = ColumnType("jsonb")
BYTEA = ColumnType("bytea")  # never written by Spark (the incremental state's blobs)
BIGSERIAL = ColumnType("bigint", ddl="bigserial")


@dataclass(frozen=True)
class Column:
    """A published column: what it holds (comment) and in what unit."""

    name: str
    type: ColumnType
    comment: str
    unit: str = ""
    nullable: bool = True
    # Extra DDL after the type (a CHECK constraint, say); part of the created table only.
    constraint: str = ""

    @property
    def definition(self) -> str:
        return f"{self.type.create}{'' if self.nullable else ' NOT NULL'}" + (
            f" {self.constraint}" if self.constraint else "")


@dataclass(frozen=True)
class Table:
    """A published table: replaced as a whole by each successful run (see batch/analysis/publish.py)."""

    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # False for a table the jobs write row by row (batch_runs), never staged nor swapped.
    published: bool = True

    def __post_init__(self) -> None:
        names = [column.name for column in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name} declares a column twice: {names}")
        missing = [name for name in self.key if name not in names]
        if missing:
            raise ValueError(f"table {self.name}: key columns {missing} are not among its columns")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def rows(self, computed: pd.DataFrame) -> pd.DataFrame:
        """Its published columns, in order, of the rows the analysis computed for it."""
        return computed[list(self.column_names)]


# A view's query, given a function naming a catalog table in the schema being published.
ViewQuery = Callable[[Callable[[str], sql.Composable]], sql.Composable]


@dataclass(frozen=True)
class View:
    """A published view, recreated by each successful run over the tables it names."""

    name: str
    description: str
    query: ViewQuery
    # The catalog tables the query reads (the view is checked against the catalog).
    reads: tuple[str, ...] = field(default=())
    # What one row stands for, in the README's table list and docs/tables.md.
    one_row_per: str = ""
