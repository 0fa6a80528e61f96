"""Which users a stage reads: every user, a stable seeded sample of them, and users named by id.

The nightly refresh must cost what changed, not what exists. Its warm-started model trains on the users whose
history changed plus a replay sample of the others, and its validation, the champion's rescoring and its
evaluation score a sample of users instead of all of them. Both samples are decided per user id, with no list of
users anywhere: a user is in the sample when the 64-bit hash of (id, seed) falls below `share` of the hash range.
So the same user is in or out on every night and every worker, a batch can be filtered on its own, and a smaller
share's sample is inside a larger one's (a growing user base keeps the users it sampled before).

    selection = UserSelection(share=sample_share(50_000, users), seed=2026)
    batch = batch.filter(selection.keep(batch["user_id"]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs look uniform even for consecutive inputs."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def user_hash(user_ids: np.ndarray, seed: int) -> np.ndarray:
    """A uint64 per user id, fixed by (id, seed)."""
    ids = np.asarray(user_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        return _splitmix64(ids + np.uint64(seed % 2**64) * _GOLDEN + _GOLDEN)


def in_sample(user_ids: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for the users in the stable sample of `share` (0..1) under `seed`."""
    if share >= 1.0:
        return np.ones(len(user_ids), dtype=bool)
    uniform = (user_hash(user_ids, seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    return uniform < share


def sample_share(wanted: int | None, users: int) -> float:
    """The share that samples about `wanted` of `users` users; 1.0 (everyone) when `wanted` is None or not fewer."""
    if wanted is None or users <= 0 or wanted >= users:
        return 1.0
    return wanted / users


@dataclass(frozen=True)
class UserSelection:
    """The stable sample of `share` under `seed`, plus the users of `listed` (sorted ids) whatever their hash."""

    share: float = 1.0
    seed: int = 0
    listed: np.ndarray | None = None

    @property
    def everyone(self) -> bool:
        return self.share >= 1.0

    def keep(self, user_ids) -> np.ndarray:
        """A boolean mask over `user_ids` (an array, or an Arrow column of int64)."""
        ids = np.asarray(user_ids.to_numpy() if hasattr(user_ids, "to_numpy") else user_ids, dtype=np.int64)
        mask = in_sample(ids, self.share, self.seed)
        if self.listed is not None and not self.everyone:
            mask |= np.isin(ids, self.listed, assume_unique=False)
        return mask

    def label(self) -> str:
        """How the selection is named in metrics, params and trained_models: 'all', or the sample's share and seed
        (and how many users were listed)."""
        if self.everyone:
            return "all"
        listed = "" if self.listed is None else f",listed={len(self.listed)}"
        return f"share={self.share:.6g},seed={self.seed}{listed}"


EVERYONE = UserSelection()
