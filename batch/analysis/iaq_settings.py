"""The indoor-air compliance settings (issue 13: UK BB101 and EN 16798-1): the IAQ_* options,
their parsers and cross-option rules, and the rules the transformations apply (`IaqRules`,
the timetable and closure files read). Pure Python: no Spark, no pandas.
"""
from __future__ import annotations

from dataclasses import dataclass

from batch.analysis.timetable import (Occupancy, checked_month_day, checked_optional_file, checked_timetable,
                                      load_occupancy, parse_holiday_calendar, parse_month_day)
from batch.core.config import Option, finite_number, number, settings_type
from batch.core.contract import RAW_COLUMNS_BY_NAME
from batch.core.errors import ConfigurationError

MICROS_PER_MINUTE = 60_000_000
# The EN 16798-1 categories I to IV, as the published columns name them.
CATEGORIES = ("i", "ii", "iii", "iv")

# Within the contract's CO2 range, as the analysis' CO2 thresholds are.
parse_ppm = number(0, RAW_COLUMNS_BY_NAME["co2"].upper, above_low=True)
# Outdoor air: about 420 ppm today (NOAA's global mean, 2024), a little more beside traffic;
# 280 before industry. Outside 300-600 ppm the value is an indoor one or a typo, and would
# shift every EN 16798-1 category.
parse_outdoor_ppm = number(300, 600)
parse_minutes = number(0, 24 * 60, above_low=True)
parse_share = number(0, 1, above_low=True)


def parse_co2_excess_limits(text: str) -> tuple[float, float, float]:
    """`550,800,1350`: the upper CO2 excesses of EN 16798-1 categories I, II, III."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"expected three excesses over outdoor CO2 (I,II,III), got {text!r}")
    limits = tuple(finite_number(part) for part in parts)
    if not 0 < limits[0] < limits[1] < limits[2]:
        raise ValueError(f"the excesses must be positive and increasing (I < II < III), got {text!r}")
    return limits  # type: ignore[return-value]


def parse_temperature_band(text: str) -> tuple[float, float]:
    """`20-24` (°C, inclusive; a negative bound written with its sign, e.g. `-5-10`)."""
    head, separator, tail = text.strip()[1:].partition("-")
    if not separator:
        raise ValueError(f"expected a band LOW-HIGH in °C, e.g. 20-24, got {text!r}")
    low, high = finite_number(text.strip()[0] + head), finite_number(tail)
    if not -40 <= low < high <= 85:
        raise ValueError(f"expected LOW below HIGH, both within -40..85 °C, got {text!r}")
    return low, high


IAQ_OPTIONS: tuple[Option, ...] = (
    Option("IAQ_TIMETABLE", "Mon-Fri 08:00-14:00",
           "school timetable in local time: 'DAYS RANGES; ...', e.g. "
           "'Mon-Fri 08:00-13:00,14:00-16:00; Sat 08:00-12:00'", checked_timetable),
    Option("IAQ_TIMETABLE_FILE", "",
           "CSV 'institute,timetable,holidays' of institutes with their own timetable and "
           "optionally public-holiday calendar (others: IAQ_TIMETABLE, IAQ_PUBLIC_HOLIDAYS)",
           checked_optional_file, path=True),
    Option("IAQ_CLOSURES_FILE", "",
           "CSV 'institute,first_date,last_date,reason' of closed dates, inclusive; "
           "institute * = all", checked_optional_file, path=True),
    Option("IAQ_PUBLIC_HOLIDAYS", "IT",
           "public holidays (closed dates) of the holidays library: country CC or CC-SUBDIVISION "
           "(e.g. IT, IT-BZ), or none", parse_holiday_calendar),
    Option("IAQ_HEATING_SEASON_START", "10-15",
           "first day MM-DD of the heating season (EN 16798-1 temperature band)", checked_month_day),
    Option("IAQ_HEATING_SEASON_END", "04-15",
           "last day MM-DD of the heating season, inclusive", checked_month_day),
    Option("IAQ_OUTDOOR_CO2_PPM", "400",
           "outdoor CO2 of the EN 16798-1 excess, ppm (a plausible outdoor value: 300 to 600)",
           parse_outdoor_ppm),
    Option("IAQ_BB101_MEAN_CO2_PPM", "1500",
           "BB101: a school day's occupied CO2 mean must be below this, ppm "
           "(1000 for mechanical ventilation)", parse_ppm),
    Option("IAQ_BB101_PEAK_CO2_PPM", "2000", "BB101 peak: CO2 above this, ppm ...", parse_ppm),
    Option("IAQ_BB101_PEAK_MINUTES", "20",
           "... for at most this many consecutive minutes", parse_minutes),
    Option("IAQ_READING_MAX_MINUTES", "15",
           "the longest time a reading may stand for; a longer gap ends an episode", parse_minutes),
    Option("IAQ_EN16798_CO2_EXCESS_PPM", "550,800,1350",
           "EN 16798-1 upper CO2 excess over outdoor of categories I,II,III, ppm",
           parse_co2_excess_limits),
    Option("IAQ_TEMPERATURE_HEATING_C", "20-24",
           "EN 16798-1 category II temperature band in the heating season, °C", parse_temperature_band),
    Option("IAQ_TEMPERATURE_NON_HEATING_C", "23-26",
           "EN 16798-1 category II temperature band outside the heating season, °C",
           parse_temperature_band),
    Option("IAQ_COMPLIANCE_SHARE", "0.95",
           "share of occupied readings a category must cover to be met", parse_share),
    Option("IAQ_MIN_DAY_COVERAGE", "0.5",
           "share of a school day's occupied time its CO2 readings must cover for the day to "
           "be judged against BB101 (each reading standing for at most IAQ_READING_MAX_MINUTES)",
           parse_share),
)


# The options read into IaqRules.occupancy and .heating_season; every other option is the
# rule of its name without the `iaq_` prefix.
_OCCUPANCY_OPTIONS = ("iaq_timetable", "iaq_timetable_file", "iaq_closures_file", "iaq_public_holidays",
                      "iaq_heating_season_start", "iaq_heating_season_end")


class IaqSettings(settings_type("IaqSettings", IAQ_OPTIONS, with_defaults=True)):  # type: ignore[misc]
    """The IAQ options, parsed (field names are the options' lower-case names; defaults theirs)."""

    def check(self) -> None:
        """Rules across options (each option checked its own value when parsed)."""
        if self.iaq_bb101_mean_co2_ppm > self.iaq_bb101_peak_co2_ppm:
            raise ConfigurationError(
                "IAQ_BB101_MEAN_CO2_PPM must not be above IAQ_BB101_PEAK_CO2_PPM "
                f"({self.iaq_bb101_mean_co2_ppm:g} > {self.iaq_bb101_peak_co2_ppm:g})")
        if self.iaq_heating_season_start == self.iaq_heating_season_end:
            raise ConfigurationError(
                "IAQ_HEATING_SEASON_START and IAQ_HEATING_SEASON_END are the same day: "
                "a one-day heating season is surely a mistake")

    def rules(self) -> IaqRules:
        """The rules the transformations apply, with the timetable and closure files read."""
        self.check()
        return IaqRules(
            occupancy=load_occupancy(self.iaq_timetable, self.iaq_timetable_file,
                                     self.iaq_closures_file, self.iaq_public_holidays),
            heating_season=(parse_month_day(self.iaq_heating_season_start),
                            parse_month_day(self.iaq_heating_season_end)),
            **{option.field.removeprefix("iaq_"): getattr(self, option.field)
               for option in IAQ_OPTIONS if option.field not in _OCCUPANCY_OPTIONS})


@dataclass(frozen=True)
class IaqRules:
    """Everything the IAQ transformations need, explicit (built by IaqSettings.rules)."""

    occupancy: Occupancy
    heating_season: tuple[tuple[int, int], tuple[int, int]]
    outdoor_co2_ppm: float
    bb101_mean_co2_ppm: float
    bb101_peak_co2_ppm: float
    bb101_peak_minutes: float
    reading_max_minutes: float
    en16798_co2_excess_ppm: tuple[float, float, float]
    temperature_heating_c: tuple[float, float]
    temperature_non_heating_c: tuple[float, float]
    compliance_share: float
    min_day_coverage: float

    @property
    def reading_max_us(self) -> int:
        return round(self.reading_max_minutes * MICROS_PER_MINUTE)

    @property
    def bb101_peak_us(self) -> int:
        return round(self.bb101_peak_minutes * MICROS_PER_MINUTE)
