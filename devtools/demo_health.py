"""The demo's sensor faults (issue 23): one AM319 sensor per institute with a fault the health
tables find (device_daily_health, device_health, sensors_needing_attention), so that the run
report's sensor sections have something to show. Used by devtools/demo.py.

Relative to the end of the span, so that any demo of at least MIN_DAYS days has them:
- silent: sends nothing for SILENT_DAYS days from SILENT_FROM_END days before the end (offline
  days in device_daily_health; back to normal by the end);
- stuck: its temperature reads STUCK_AT_C over the last STUCK_DAYS days (status stuck);
- drifting: its CO2 reads DRIFT_PPM_PER_DAY more each day over the last DRIFT_DAYS days (night
  minima far above outdoor air: co2_drift_suspected);
- draining: its battery falls DRAIN_PER_DAY % a day to DRAIN_END_PCT % at the end (about 10 days
  left before 10 %).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_DAYS = 45
SILENT_FROM_END, SILENT_DAYS = 30, 4
STUCK_DAYS, STUCK_AT_C = 5, 21.5
DRIFT_DAYS, DRIFT_PPM_PER_DAY = 21, 20.0
DRAIN_PER_DAY, DRAIN_END_PCT = 1.0, 20.0
MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class SensorFaults:
    """The faulty devices (fleet indices, -1: none) and the instant the span ends, UTC µs."""

    silent: int = -1
    stuck: int = -1
    drifting: int = -1
    draining: int = -1
    end_us: int = 0

    @classmethod
    def choose(cls, institute: np.ndarray, eligible: np.ndarray, end_us: int, days: int) -> SensorFaults:
        """The first `eligible` device (a registered AM319 sensor of a classroom without a story
        of its own) of each of the first four institutes, in the order silent, stuck, drifting,
        draining; none for a span shorter than MIN_DAYS."""
        if days < MIN_DAYS:
            return cls()
        chosen = []
        for number in range(4):
            candidates = np.flatnonzero(eligible & (institute == number))
            chosen.append(int(candidates[0]) if len(candidates) else -1)
        return cls(*chosen, end_us=end_us)

    def _days_to_end(self, sendtime_us: np.ndarray) -> np.ndarray:
        return (self.end_us - sendtime_us) / MICROS_PER_DAY

    def reporting(self, device: np.ndarray, sendtime_us: np.ndarray) -> np.ndarray:
        """False for the readings the silent device does not send."""
        to_end = self._days_to_end(sendtime_us)
        return ~((device == self.silent) & (to_end <= SILENT_FROM_END)
                 & (to_end > SILENT_FROM_END - SILENT_DAYS))

    def apply(self, values: dict[str, np.ndarray], device: np.ndarray) -> None:
        """Give the stuck, drifting and draining devices' readings their fault, in place."""
        to_end = self._days_to_end(values["sendtime"])
        stuck = (device == self.stuck) & (to_end <= STUCK_DAYS)
        values["temperature"] = np.where(stuck, STUCK_AT_C, values["temperature"])
        drifting = (device == self.drifting) & (to_end <= DRIFT_DAYS)
        values["co2"] = np.where(drifting, values["co2"] + np.round(
            (DRIFT_DAYS - to_end) * DRIFT_PPM_PER_DAY), values["co2"])
        draining = device == self.draining
        values["battery"] = np.where(draining, np.clip(np.rint(
            DRAIN_END_PCT + DRAIN_PER_DAY * to_end), 1.0, values["battery"]), values["battery"])
