"""Training-free quality of motivations and item profiles: numpy, no Delta, no MLflow.

Four families of numbers, so that prompts, models and embedders are chosen on measurements:

- Retrieval: each user's validation item (the target) is ranked among all catalog items by a score,
  with the user's training items excluded (the target keeps its score if it is also one of them),
  ties counted against the target, as in `momorec.core.metrics` (full ranking, whose HR/NDCG this uses). From the
  0-based rank r: HR@K = [r < K], NDCG@K = [r < K] / log2(r + 2). A target with no score (its item has
  no embedding, or the user has no vector) is a miss. Scores: cosine between a user vector and the
  item embeddings; item popularity; a uniformly random ranking (closed form).
- Grounding: whether a motivation's words name what its cited purchases are (category words).
- Specificity: how many users share one motivation text, and the entropy of their level-1 codes.
- Review: how often the reviewer accepted, and how often it asked for a revision.

Ids are int64 item ids; a catalog is a sorted (N,) array of them, and scores are (B, N), column j =
item_ids[j]. Variable-length id lists per user (histories, exclusions) are a `Ragged`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from momorec.core.metrics import hit_at_k, ndcg_at_k

K = 10
CHUNK_USERS = 512  # users scored at once: memory is CHUNK_USERS x N floats
MISS = np.iinfo(np.int64).max  # rank of a target without a score: past every cut-off, whatever N is


@dataclass(frozen=True)
class Ragged:
    """Per-user id lists: user u's ids are values[offsets[u]:offsets[u + 1]] (Arrow's list layout)."""

    values: np.ndarray  # (total,) int64
    offsets: np.ndarray  # (U + 1,) int64, offsets[0] = 0

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> Ragged:
        lengths = np.array([len(x) for x in lists], dtype=np.int64)
        values = np.array([i for x in lists for i in x], dtype=np.int64)
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self) -> np.ndarray:
        """(total,) the user (0-based) of each value."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def slice(self, start: int, stop: int) -> Ragged:
        lo, hi = self.offsets[start], self.offsets[stop]
        return Ragged(self.values[lo:hi], self.offsets[start : stop + 1] - lo)


def columns(item_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Column of each id in the sorted catalog `item_ids`; -1 for an id not in it."""
    if len(item_ids) > 1 and not np.all(np.diff(item_ids) > 0):
        raise ValueError("item_ids must be sorted and unique")
    ids = np.asarray(ids, dtype=np.int64)
    if len(item_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(item_ids, ids), len(item_ids) - 1)
    return np.where(item_ids[pos] == ids, pos, -1)


# ---- retrieval ----------------------------------------------------------------------------------
def target_ranks(scores: np.ndarray, targets: np.ndarray, exclude: Ragged) -> np.ndarray:
    """0-based rank of each row's target; a target without a finite score gets rank MISS.

    scores: (B, N) float, NaN = no score; targets: (B,) columns (-1: not in the catalog);
    exclude: B lists of columns removed from the ranking (-1 ignored). Returns (B,) int64.
    """
    b = scores.shape[0]
    rows, known = np.arange(b), targets >= 0
    target = np.where(known, scores[rows, np.maximum(targets, 0)], np.nan)  # (B,)
    masked = np.where(np.isnan(scores), -np.inf, scores)  # (B, N) a copy: `scores` may be a view
    cols = exclude.values
    keep = cols >= 0
    masked[exclude.rows()[keep], cols[keep]] = -np.inf
    masked[rows[known], targets[known]] = target[known]  # a target that is also a training item competes
    ranks = (masked >= target[:, None]).sum(axis=1) - 1  # (B,) the target counts itself once
    return np.where(np.isfinite(target), ranks, MISS).astype(np.int64)


def _chunked_ranks(
    score_chunk: Callable[[int, int], np.ndarray], targets: np.ndarray, exclude: Ragged, chunk: int
) -> np.ndarray:
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), chunk):
        stop = min(start + chunk, len(targets))
        ranks[start:stop] = target_ranks(score_chunk(start, stop), targets[start:stop], exclude.slice(start, stop))
    return ranks


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(M, d) rows scaled to length 1; a zero or non-finite row becomes all NaN (no vector)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    ok = np.isfinite(norms) & (norms > 0)
    return np.where(ok, vectors / np.where(ok, norms, 1.0), np.nan).astype(np.float32)


def cosine_ranks(
    user_vecs: np.ndarray, item_vecs: np.ndarray, targets: np.ndarray, exclude: Ragged, chunk: int = CHUNK_USERS
) -> np.ndarray:
    """Ranks by cosine similarity. user_vecs (U, d), item_vecs (N, d), NaN rows = no vector;
    targets (U,) columns; exclude: U lists of columns. Returns (U,) int64."""
    users, items = unit_rows(user_vecs), unit_rows(item_vecs)
    return _chunked_ranks(lambda a, b: users[a:b] @ items.T, targets, exclude, chunk)  # (B, N) per chunk


def popularity_counts(n_items: int, histories: Ragged) -> np.ndarray:
    """(N,) float64 occurrences of each column in `histories` (columns; -1 ignored)."""
    cols = histories.values
    return np.bincount(cols[cols >= 0], minlength=n_items).astype(np.float64)


def popularity_ranks(counts: np.ndarray, targets: np.ndarray, exclude: Ragged, chunk: int = CHUNK_USERS) -> np.ndarray:
    """Ranks by item popularity `counts` (N,), the same for every user; ties pessimistic."""
    return _chunked_ranks(lambda a, b: np.broadcast_to(counts, (b - a, len(counts))), targets, exclude, chunk)


def history_mean_vectors(item_vecs: np.ndarray, histories: Ragged, chunk: int = CHUNK_USERS) -> np.ndarray:
    """(U, d) mean of the unit item vectors of each user's history (columns); NaN row when none has one."""
    items = unit_rows(item_vecs)
    out = np.full((len(histories), items.shape[1]), np.nan, dtype=np.float32)
    for start in range(0, len(histories), chunk):
        part = histories.slice(start, min(start + chunk, len(histories)))
        rows, cols = part.rows(), part.values
        keep = cols >= 0
        keep[keep] = np.isfinite(items[cols[keep], 0])
        sums = np.zeros((len(part), items.shape[1]), dtype=np.float64)
        np.add.at(sums, rows[keep], items[cols[keep]])
        counts = np.bincount(rows[keep], minlength=len(part))[:, None]
        out[start : start + len(part)] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def candidate_counts(n_items: int, targets: np.ndarray, exclude: Ragged) -> np.ndarray:
    """(U,) items each user's target competes with, itself included: N minus its distinct exclusions
    other than the target."""
    rows, cols = exclude.rows(), exclude.values
    keep = (cols >= 0) & (cols != targets[rows])
    pairs = np.unique(rows[keep] * np.int64(n_items) + cols[keep])
    return n_items - np.bincount(pairs // n_items, minlength=len(targets))


def random_metrics(candidates: np.ndarray, k: int = K) -> dict[str, float]:
    """Expected HR@k / NDCG@k of a uniformly random ranking, in closed form: with C candidates the
    target's rank is uniform on 0..C-1, so E[HR@k] = min(k, C) / C and
    E[NDCG@k] = sum_{r < min(k, C)} 1 / log2(r + 2) / C, averaged over users."""
    c = np.asarray(candidates, dtype=np.int64)
    if c.size == 0:
        raise ValueError("no users")
    prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])  # prefix[m] = sum_{r<m}
    top = np.minimum(k, c)
    return {f"hr_{k}": float(np.mean(top / c)), f"ndcg_{k}": float(np.mean(prefix[top] / c)), "users": int(c.size)}


def ndcg_per_user(ranks: np.ndarray, k: int = K) -> np.ndarray:
    """(U,) per-user NDCG@k: the evaluator's definition."""
    return ndcg_at_k(ranks, k)


def rank_metrics(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    """(U,) 0-based ranks -> {"hr_10", "ndcg_10", "users"} (means over users)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no users")
    return {
        f"hr_{k}": float(np.mean(hit_at_k(ranks, k))),
        f"ndcg_{k}": float(np.mean(ndcg_per_user(ranks, k))),
        "users": int(ranks.size),
    }


def retrieval_metrics(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    item_ids: np.ndarray,
    targets: np.ndarray,
    exclude: Ragged,
    k: int = K,
) -> dict[str, float]:
    """Full-ranking HR@k / NDCG@k of `targets` (item ids) by cosine(user, item), `exclude` (item ids)
    removed. user_vecs (U, d), item_vecs (N, d) aligned with sorted `item_ids` (N,)."""
    cols = Ragged(columns(item_ids, exclude.values), exclude.offsets)
    return rank_metrics(cosine_ranks(user_vecs, item_vecs, columns(item_ids, targets), cols), k)


# ---- grounding ----------------------------------------------------------------------------------
# The openers the reason pattern imposes and words that name no product: they would match anything.
STOPWORDS = frozenset(
    "wants needs cares about their them they more with that this have from into some very also make keep "
    "look looking like likes love loves good best product products item items things thing buy buys buying "
    "other using uses used well high quality".split()
)


def content_words(text: str) -> set[str]:
    """Lower-case alphabetic words of 4+ letters, stopwords dropped."""
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4 and w not in STOPWORDS}


def words_match(reason: set[str], category: set[str]) -> bool:
    """A reason word names a category word when one is a prefix of the other ("nail" ~ "nails",
    "skin" ~ "skincare"): a crude stemmer, enough for plural and compound forms."""
    return any(r.startswith(c) or c.startswith(r) for r in reason for c in category)


def grounding(
    reasons: Sequence[str],
    evidence: Sequence[Sequence[int]],
    histories: Sequence[Sequence[int]],
    categories: Mapping[int, Sequence[str]],
    seed: int,
) -> dict[str, float]:
    """Per motivation (one entry each): its reason, its cited item ids, its user's prompt history.

    Returns:
    - evidence_in_history: share of cited ids that are in the user's prompt history (a stored-data
      check: the parser rejects out-of-range citations, so below 1.0 means a broken id mapping);
    - category_match: share of motivations with a content word matching a category word of a cited item;
    - category_match_shuffled: the same with each reason paired with another motivation's evidence
      (a seeded permutation): the rate that generic words ("beauty", "care") alone reach;
    - motivations: how many it is over.
    """
    n = len(reasons)
    if n == 0:
        raise ValueError("no motivations")
    cited = sum(len(e) for e in evidence)
    in_history = sum(len(set(e) & set(h)) for e, h in zip(evidence, histories, strict=True))
    words = [content_words(r) for r in reasons]
    cats = [content_words(" ".join(c for i in e for c in categories.get(int(i), ()))) for e in evidence]
    shuffled = np.random.default_rng(seed).permutation(n)
    return {
        "evidence_in_history": in_history / cited if cited else 1.0,
        "category_match": float(np.mean([words_match(w, c) for w, c in zip(words, cats, strict=True)])),
        "category_match_shuffled": float(np.mean([words_match(words[i], cats[j]) for i, j in enumerate(shuffled)])),
        "motivations": n,
    }


def in_range_share(ok: int, out_of_range: int) -> float | None:
    """Share of the motivation analyst's schema-valid generations whose every evidence number was in
    1..len(history): a parsed generation either succeeds (`ok`) or fails the range check
    (`invented_items`, AgentStats.attempt_failures). None when there were none."""
    total = ok + out_of_range
    return ok / total if total else None


# ---- specificity and review -------------------------------------------------------------------
def entropy_bits(labels: Sequence[int]) -> float:
    """Shannon entropy (bits) of the empirical distribution of `labels`."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def specificity(texts: Sequence[str], first_codes: Sequence[int] | None, codebook_size: int | None = None) -> dict:
    """distinct_share: distinct motivation texts (case and spacing ignored) / users; first_code_entropy:
    entropy (bits) of the users' level-1 codes; first_code_entropy_norm: that over its maximum
    log2(min(K, coded users)) (None when the maximum is 0); coded_users: users with a code."""
    if not texts:
        raise ValueError("no users")
    distinct = len({" ".join(t.lower().split()) for t in texts})
    out: dict = {"distinct_share": distinct / len(texts), "users": len(texts)}
    if first_codes is None or len(first_codes) == 0:
        return {**out, "first_code_entropy": None, "first_code_entropy_norm": None, "coded_users": 0}
    h = entropy_bits(first_codes)
    ceiling = np.log2(min(codebook_size or len(first_codes), len(first_codes)))
    return {
        **out,
        "first_code_entropy": h,
        "first_code_entropy_norm": float(h / ceiling) if ceiling > 0 else None,
        "coded_users": len(first_codes),
    }


def review_summary(accepted: Sequence[bool], rounds: Sequence[int]) -> dict[str, float]:
    """accepted_share: users whose final motivations the reviewer accepted; revised_share: users with at
    least one revision round; accepted_after_revision_share: of the revised, those finally accepted."""
    accepted, rounds = np.asarray(accepted, dtype=bool), np.asarray(rounds, dtype=np.int64)
    if accepted.size == 0:
        raise ValueError("no users")
    revised = rounds > 0
    return {
        "accepted_share": float(accepted.mean()),
        "revised_share": float(revised.mean()),
        "accepted_after_revision_share": float(accepted[revised].mean()) if revised.any() else None,
        "mean_rounds": float(rounds.mean()),
        "users": int(accepted.size),
    }


def revision_gain(before: Sequence[float], after: Sequence[float]) -> dict[str, float]:
    """Paired gain of a revision: `before[u]` is a per-user score of user u's first draft, `after[u]`
    the same score of the final motivations (e.g. NDCG@10 of the validation item by the motivation
    embedding, or the category-match share of its motivations), over the users that were revised.
    Returns mean_gain = mean(after - before), improved_share = share with after > before,
    worsened_share, users. Needs the draft, which `user_motivations` does not keep."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.size == 0:
        raise ValueError("before and after must be non-empty and aligned")
    diff = after - before
    return {
        "mean_gain": float(diff.mean()),
        "improved_share": float((diff > 0).mean()),
        "worsened_share": float((diff < 0).mean()),
        "users": int(diff.size),
    }
