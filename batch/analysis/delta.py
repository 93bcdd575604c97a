"""Which published rows a run changes: a digest of every published row is stored with the state
(batch/analysis/state.py), so that an incremental run stages and swaps only the rows whose
digest differs from the previous run's, and deletes the keys that are gone (issue 22: readers
see the old tables or the new ones, never a mix: the swap is still one transaction).

A row's digest is two independent 64-bit hashes of its published values (pandas' SipHash of
each column, combined), 128 bits: two different rows share one with a probability of about
2^-128. The rows of untouched groups are computed from the same partials in the same order
as before, so they are bit-identical and their digests equal.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DIGEST_COLUMNS = ("row_digest_a", "row_digest_b")
# pandas' hash keys are 16 bytes; two keys give two independent hashes.
_HASH_KEYS = ("indoor-air-rowsA", "indoor-air-rowsB")


def row_digests(rows: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """The key columns of `rows` and the two digests of each whole row (as int64)."""
    digests = rows[list(key)].reset_index(drop=True)
    for name, hash_key in zip(DIGEST_COLUMNS, _HASH_KEYS):
        hashes = pd.util.hash_pandas_object(rows, index=False, hash_key=hash_key).to_numpy()
        digests[name] = hashes.view(np.int64)
    return digests


def changes(rows: pd.DataFrame, digests: pd.DataFrame, stored: pd.DataFrame,
            key: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows to insert: new or changed; the keys to delete: the published rows not kept as
    they are, changed or gone), from this run's `rows` and their `digests` (same order) against
    the `stored` digests of the published rows."""
    key = list(key)
    # A left merge keeps the order of `digests`, hence of `rows`; keys are unique (primary keys).
    position = digests[key].merge(stored[key].assign(_stored_at=np.arange(len(stored))),
                                  on=key, how="left")["_stored_at"]
    found = position.notna().to_numpy()
    at = position.fillna(0).to_numpy(dtype=np.int64)
    same = found.copy()
    for name in DIGEST_COLUMNS:
        if len(stored):
            same &= digests[name].to_numpy() == stored[name].to_numpy()[at]
    kept = np.zeros(len(stored), dtype=bool)
    kept[at[same]] = True
    return rows[~same], stored.loc[~kept, key].reset_index(drop=True)
