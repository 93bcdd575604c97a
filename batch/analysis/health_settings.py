"""The sensor health's settings (issue 23): every limit of batch/analysis/health.py is an option
(HEALTH_*, env/spark.env) with the issue's value as its default, recorded in batch_runs.settings
with the other settings of the run."""
from __future__ import annotations

from dataclasses import dataclass

from batch.core.config import Option, number, parse_positive_int, settings_type, whole_number


def parse_night_end_hour(text: str) -> int:
    try:
        hour = whole_number(text)
    except ValueError:
        hour = 0
    if not 1 <= hour <= 12:
        raise ValueError(f"expected a whole hour from 1 to 12, got {text!r}")
    return hour


# The options' field names are the rules' with this prefix.
_PREFIX = "health_"

HEALTH_OPTIONS: tuple[Option, ...] = (
    Option("HEALTH_NIGHT_END_HOUR", "5",
           "the night runs from 00:00 to this local hour (1-12): a classroom is empty then, and "
           "its lowest CO2 is the night minimum", parse_night_end_hour),
    Option("HEALTH_STUCK_MIN_READINGS", "12",
           "a metric is stuck on a day when its lowest and highest value are equal over at least "
           "this many readings", parse_positive_int),
    Option("HEALTH_SPARSE_SHARE", "0.5",
           "a day is sparse with fewer readings than this share of the device's usual daily "
           "readings", number(0, 1, above_low=True)),
    Option("HEALTH_USUAL_DAYS", "28",
           "a device's usual daily readings: the median over its last this many days with readings",
           parse_positive_int),
    Option("HEALTH_BATTERY_FIT_DAYS", "30",
           "days of daily battery minima the battery's least-squares line is fitted over",
           parse_positive_int),
    Option("HEALTH_BATTERY_MIN_DAYS", "7",
           "fewest days with a battery value in them for the days of battery left",
           parse_positive_int),
    Option("HEALTH_BATTERY_EMPTY_PCT", "10",
           "battery level (percent) the days of battery left count down to", number(0, 100)),
    Option("HEALTH_BATTERY_ATTENTION_DAYS", "30",
           "a device with fewer days of battery left needs attention", parse_positive_int),
    Option("HEALTH_CO2_BASELINE_NIGHTS", "7",
           "CO2 baseline: the median night minimum of the last this many nights with a night "
           "reading", parse_positive_int),
    Option("HEALTH_CO2_DRIFT_ABOVE_PPM", "150",
           "CO2 drift is suspected when the baseline stays more than this above outdoor CO2 "
           "(IAQ_OUTDOOR_CO2_PPM), ppm ...", number(0, 5000, above_low=True)),
    Option("HEALTH_CO2_DRIFT_BELOW_PPM", "50",
           "... or more than this below it, ppm ...", number(0, 600, above_low=True)),
    Option("HEALTH_CO2_DRIFT_NIGHTS", "7",
           "... on this many consecutive nights with a night reading", parse_positive_int),
)


@dataclass(frozen=True)
class HealthRules:
    """Everything the derivation needs, explicit (built by HealthSettings.rules): each field is
    the HEALTH_ option of its name (`night_end_hour`: HEALTH_NIGHT_END_HOUR), the defaults are
    the options'; `outdoor_co2_ppm` is IAQ_OUTDOOR_CO2_PPM."""

    night_end_hour: int
    stuck_min_readings: int
    sparse_share: float
    usual_days: int
    battery_fit_days: int
    battery_min_days: int
    battery_empty_pct: float
    battery_attention_days: int
    co2_baseline_nights: int
    outdoor_co2_ppm: float
    co2_drift_above_ppm: float
    co2_drift_below_ppm: float
    co2_drift_nights: int


class HealthSettings(settings_type("HealthSettings", HEALTH_OPTIONS, with_defaults=True)):  # type: ignore[misc]
    """The HEALTH_ options, parsed (field names are the options' lower-case names)."""

    def rules(self, outdoor_co2_ppm: float) -> HealthRules:
        """`outdoor_co2_ppm`: IAQ_OUTDOOR_CO2_PPM, the drift's reference."""
        return HealthRules(outdoor_co2_ppm=outdoor_co2_ppm, **{
            option.field.removeprefix(_PREFIX): getattr(self, option.field) for option in HEALTH_OPTIONS})
