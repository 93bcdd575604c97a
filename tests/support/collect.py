"""The job's device-day partials and episodes collected as pandas frames, for tests and the
aggregate profile: the job itself collects them as Arrow (batch/analysis/device_days.py)."""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame

from batch.analysis.iaq_partials import CO2_N, device_day_episodes_table
from batch.analysis.iaq_settings import IaqRules
from batch.analysis.partials import with_group_keys
from batch.analysis.statistics import GroupKey
from batch.core.session import arrow_to_pandas, collect_to_arrow
from batch.core.validation import EXCLUSION_REASON


def collect_to_pandas(df: DataFrame) -> pd.DataFrame:
    return arrow_to_pandas(collect_to_arrow(df))


def collect_partials(partials_df: DataFrame, keys: tuple[GroupKey, ...]) -> pd.DataFrame:
    """`with_group_keys`' partials in the driver."""
    return collect_to_pandas(with_group_keys(partials_df, keys))


def collect_device_day_episodes(validated_df: DataFrame, timezone: str, rules: IaqRules,
                                partials: pd.DataFrame) -> pd.DataFrame:
    """`device_day_episodes_table` as pandas, judged on `collect_partials`' frame."""
    co2_n = partials.loc[partials[EXCLUSION_REASON].isna(), CO2_N]
    return arrow_to_pandas(device_day_episodes_table(validated_df, timezone, rules, bool((co2_n > 0).any())))
