"""scripts/synth_data.py: seeded, the shape it promises, counts that add up, memory bounded by a part."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import synth_data  # noqa: E402


def test_tiny_scale_has_the_promised_shape(tmp_path):
    m = synth_data.generate("tiny", tmp_path / "a", seed=7, users_per_part=150, night=0.05)
    events = pq.read_table(tmp_path / "a" / "events")
    assert m["parts"] == 3 and events.num_rows == m["events"]
    per_user = np.unique(events.column("user").to_numpy(), return_counts=True)[1]
    assert len(per_user) == 400 and per_user.min() >= synth_data.MIN_EVENTS
    assert m["history_length"]["median"] == float(np.median(per_user))
    items = [json.loads(line) for line in (tmp_path / "a" / "items.jsonl").open()]
    assert len(items) == 300 and set(events.column("item").to_pylist()) <= {i["item"] for i in items}
    assert all(i["title"] and len(i["categories"][0]) == 4 for i in items)
    # each user's events are in time order within the generated range
    ts = events.column("timestamp").to_numpy()
    users = events.column("user").to_numpy()
    same = users[1:] == users[:-1]
    assert np.all(ts[1:][same] >= ts[:-1][same]) and ts.min() >= synth_data.T0
    night = pq.read_table(tmp_path / "a" / "night.parquet")
    assert night.num_rows == m["night"]["events"] and night.column("timestamp").to_numpy().min() > ts.max()
    assert len(set(night.column("user").to_pylist())) == m["night"]["users"] == 20


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not(tmp_path):
    synth_data.generate("tiny", tmp_path / "a", seed=7, users_per_part=400, night=None)
    synth_data.generate("tiny", tmp_path / "b", seed=7, users_per_part=400, night=None)
    synth_data.generate("tiny", tmp_path / "c", seed=8, users_per_part=400, night=None)
    a, b, c = (pq.read_table(tmp_path / x / "events") for x in "abc")
    assert a.equals(b) and not a.equals(c)


def test_popular_items_dominate_like_a_power_law(tmp_path):
    m = synth_data.generate("S", tmp_path / "s", seed=1, users_per_part=5_000, night=None)
    assert 150_000 < m["events"] < 250_000 and m["history_length"]["median"] == 6.0
    assert 0.08 < m["top_1pct_items_event_share"] < 0.2  # Beauty: 0.105
    assert 0.03 < m["repeat_share"] < 0.2
