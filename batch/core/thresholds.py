"""The limits of the share statistics (CO2_HIGH_PPM, ...), apart from the Spark code that
applies them: the report reads them as a run recorded them without importing pyspark."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Limits of the share statistics (configurable: CO2_HIGH_PPM, ...)."""

    co2_high_ppm: float = 1000.0
    co2_very_high_ppm: float = 1500.0
    comfort_min_c: float = 20.0
    comfort_max_c: float = 26.0

    @classmethod
    def recorded(cls, settings: Mapping[str, Any]) -> Thresholds:
        """The thresholds a run recorded in batch_runs.settings (by field name); the default
        of each one a run of an earlier release did not record."""
        return cls(**{item.name: float(settings[item.name]) for item in fields(cls)
                      if settings.get(item.name) is not None})
