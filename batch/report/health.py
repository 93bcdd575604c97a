"""The run report's sensor health (issue 23): per institute, its sensors needing attention, and a
fleet line in the data-quality panel; read from the published device_health and
sensors_needing_attention (batch/analysis/health_tables.py), shown by health.html.j2."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from batch.analysis.health import DEVICE_HEALTH_TABLE, OFFLINE, OK, SPARSE, STUCK
from batch.analysis.health_tables import ATTENTION_VIEW

# The fleet line's counts, in its order: the statuses, then the devices suspected of CO2 drift.
DRIFT = "drift"
FLEET_ORDER = (OK, SPARSE, OFFLINE, STUCK, DRIFT)


@dataclass(frozen=True)
class SensorAttention:
    """One row of sensors_needing_attention."""

    institute: str
    classroom: str
    dev_eui: str
    status: str
    reasons: str | None


@dataclass(frozen=True)
class SensorHealth:
    # Devices per status of device_health, and those suspected of CO2 drift (FLEET_ORDER).
    fleet: dict[str, int]
    # The sensors needing attention of each institute, worst first (the view's order).
    attention: dict[str, list[SensorAttention]] = field(default_factory=dict)

    def of(self, institute: str) -> list[SensorAttention]:
        return self.attention.get(institute, [])


def read_sensor_health(conn: psycopg2.extensions.connection, schema: str) -> SensorHealth | None:
    """The published sensor health; None when an earlier release published the tables."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_schema = %s AND table_name IN (%s, %s)",
                       (schema, DEVICE_HEALTH_TABLE, ATTENTION_VIEW))
        if cursor.fetchone()[0] < 2:
            return None
        cursor.execute(sql.SQL(
            "SELECT status, count(*) FROM {health} GROUP BY status UNION ALL "
            "SELECT {drift}, count(*) FROM {health} WHERE co2_drift_suspected").format(
                health=sql.Identifier(schema, DEVICE_HEALTH_TABLE), drift=sql.Literal(DRIFT)))
        counts = dict(cursor.fetchall())
        cursor.execute(sql.SQL("SELECT institute, classroom, dev_eui, status, reasons FROM {}")
                       .format(sql.Identifier(schema, ATTENTION_VIEW)))
        attention: dict[str, list[SensorAttention]] = defaultdict(list)
        for row in cursor.fetchall():
            attention[row[0]].append(SensorAttention(*row))
    return SensorHealth({name: counts.get(name, 0) for name in FLEET_ORDER}, dict(attention))
