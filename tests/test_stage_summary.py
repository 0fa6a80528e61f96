"""The one-line stage summaries `momorec run` prints: the headline figures, rounded, nothing nested."""

from momorec.progress import stage_summary

SEEDS = {"mean": 0.176440455, "std": 0.0123836, "n": 2.0}


def test_train_and_evaluate_show_mean_and_std_over_seeds():
    train = stage_summary({"stage": "train", "users": 200, "valid": {"valid.full.ndcg_10": SEEDS}})
    assert train == "users=200; valid=valid.full.ndcg_10=0.1764 ± 0.0124"
    evaluate = stage_summary(
        {"stage": "evaluate", "users": 200, "metrics": {"full": {"hr_5": SEEDS, "ndcg_10": SEEDS, "hr_10": SEEDS}}}
    )
    assert evaluate == "users=200; full: ndcg_10=0.1764 ± 0.0124, hr_10=0.1764 ± 0.0124"


def test_quantize_shows_its_entities_and_promote_rounds():
    levels = [{"level": 0, "codes": 16}, {"level": 1, "codes": 16}]
    quantize = stage_summary(
        {"stage": "quantize", "entities": {"item": {"action": "fit", "rows_coded": 187, "levels": levels}}}
    )
    assert quantize == "item: fit 187 rows, codes 16x16"
    promote = stage_summary(
        {"stage": "promote", "candidate_version": 2, "decision": "champion", "candidate_valid_ndcg_10": 0.220669884}
    )
    assert promote == "v2 -> @champion (valid NDCG@10 0.2207 vs champion None)"
