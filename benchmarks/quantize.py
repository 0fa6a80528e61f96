"""Benchmark of the residual k-means fit (momorec.quantize) — writes benchmarks/results/quantize.json.

(a) quality/speed vs faiss.ResidualQuantizer on the same data (3 levels x 256 codes):
    synthetic clustered 100k x 64, and the real Beauty item embeddings when
    <warehouse>/beauty/item_profiles exists. Reported: fit time (+ codes for every row), relative
    reconstruction error sum||x - x_hat||^2 / sum||x - mean||^2, and the time ratio ours / faiss for the
    fastest of our settings whose error is <= faiss's (target <= 1.0x).
(b) scale: 1M x 256 float32, 3 x 256, in a fresh subprocess each (so ru_maxrss is that run's peak):
    wall time of the fit and peak RSS (targets < 60 s, < 4 GB).

    .venv/bin/python benchmarks/quantize.py [--quick] [--warehouse warehouse] [--embeddings x.npz] [--parts a,b]

--embeddings adds one more (a) comparison on the array `items` of an .npz (e.g. stand-in LLM
embeddings of catalog text while the motivate stage's table does not exist yet). --parts reruns
only some parts; the other parts' figures already in the results file are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads: see momorec/quantize/kmeans.py

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from momorec.quantize.residual import FitParams, fit_residual  # noqa: E402
from momorec.quantize.shards import LocalPool  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quantize.json"
LEVELS, CODES = 3, 256


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """A Gaussian mixture with uneven weights and scales, built in float32 blocks (no float64 copy)."""
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(clusters, dim)) * 4).astype(np.float32)
    scales = rng.uniform(0.5, 2.0, clusters).astype(np.float32)
    weights = rng.pareto(1.5, clusters) + 1
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 65_536):
        part = labels[start : start + 65_536]
        noise = rng.standard_normal((part.size, dim), dtype=np.float32)
        x[start : start + part.size] = centres[part] + noise * scales[part, None]
    return x


def rel_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    centred = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    return float(((x.astype(np.float64) - x_hat) ** 2).sum() / (centred**2).sum())


def run_faiss(x: np.ndarray, beam: int, codes: int = CODES) -> dict:
    rq = faiss.ResidualQuantizer(x.shape[1], LEVELS, int(np.log2(codes)))
    rq.max_beam_size = beam
    if x.shape[0] < x.shape[1]:  # its default progressive-dim training runs a PCA that needs n >= d
        rq.train_type = faiss.ResidualQuantizer.Train_default
    start = time.perf_counter()
    rq.train(x)
    train_s = time.perf_counter() - start
    codes = rq.compute_codes(x)
    total_s = time.perf_counter() - start
    return {
        "method": f"faiss.ResidualQuantizer(beam={beam})",
        "fit_s": train_s,
        "fit_and_code_s": total_s,
        "rel_error": rel_error(x, rq.decode(codes)),
    }


def run_ours(
    x: np.ndarray, iterations: int, max_ppc: int | None, pca_dim: int | None = None, codes: int = CODES
) -> dict:
    params = FitParams(
        (codes,) * LEVELS, iterations=iterations, max_points_per_centroid=max_ppc, pca_dim=pca_dim, seed=0
    )
    start = time.perf_counter()
    out = fit_residual(LocalPool.from_array(x), params)  # fit includes the codes of every row
    seconds = time.perf_counter() - start
    from momorec.quantize.residual import decode

    x_hat = decode(out.codebook, out.coded.codes, to_input=True)
    return {
        "method": f"momorec(iterations={iterations}, max_points_per_centroid={max_ppc}, pca_dim={pca_dim})",
        "fit_s": seconds,
        "fit_and_code_s": seconds,
        "rel_error": rel_error(x, x_hat),
        "rel_error_reported": out.coded.rel_error(),
    }


def best(fn, repeats: int) -> dict:
    """The fastest of `repeats` runs (the machine is shared; the minimum is the least disturbed)."""
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r["fit_and_code_s"])


def compare(
    name: str, x: np.ndarray, repeats: int, ours_grid: list[tuple[int, int | None]], codes: int = CODES
) -> dict:
    print(f"[a] {name}: {x.shape[0]} x {x.shape[1]}, {LEVELS} x {codes} codes", flush=True)
    faiss_runs = [best(lambda b=b: run_faiss(x, b, codes), repeats) for b in (1, 5)]
    ours_runs = [best(lambda it=it, m=m: run_ours(x, it, m, codes=codes), repeats) for it, m in ours_grid]
    for r in faiss_runs + ours_runs:
        print(
            f"    {r['method']:<70} fit+codes {r['fit_and_code_s']:7.2f} s   rel_error {r['rel_error']:.5f}", flush=True
        )
    ratios = {}
    for ref in faiss_runs:
        ok = [r for r in ours_runs if r["rel_error"] <= ref["rel_error"]]
        if ok:
            fastest = min(ok, key=lambda r: r["fit_and_code_s"])
            ratios[ref["method"]] = {
                "ours": fastest["method"],
                "time_ratio": fastest["fit_and_code_s"] / ref["fit_and_code_s"],
                "ours_rel_error": fastest["rel_error"],
                "faiss_rel_error": ref["rel_error"],
            }
        else:
            ratios[ref["method"]] = {"ours": None, "note": "no setting of ours reached faiss's error"}
        print(f"    vs {ref['method']}: {ratios[ref['method']]}", flush=True)
    return {
        "data": name,
        "rows": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "codes": codes,
        "faiss": faiss_runs,
        "ours": ours_runs,
        "time_ratio_at_equal_or_lower_error": ratios,
    }


def beauty_embeddings(warehouse: str) -> np.ndarray | None:
    from momorec.storage import delta

    path = os.path.join(warehouse, "beauty", "item_profiles")
    if not delta.exists(path):
        return None
    from momorec.quantize.inputs import embeddings_from_arrow

    return embeddings_from_arrow(delta.read(path, columns=["item_id", "status", "embedding"]), "item_id").vectors


def scale_child(rows: int, dim: int, pca_dim: int | None, iterations: int) -> None:
    """Runs in a subprocess: one 1M-row fit; prints one JSON line."""
    x = clustered(rows, dim, 1000, seed=1)
    data_s = time.perf_counter()
    params = FitParams((CODES,) * LEVELS, iterations=iterations, pca_dim=pca_dim, seed=0)
    out = fit_residual(LocalPool.from_array(x), params)
    fit_s = time.perf_counter() - data_s
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "dim": dim,
                "pca_dim": pca_dim,
                "levels": LEVELS,
                "codes": CODES,
                "iterations": iterations,
                "fit_s": fit_s,
                "peak_rss_gb": peak / 2**30,
                "data_gb": x.nbytes / 2**30,
                "rel_error": out.coded.rel_error(),
            }
        )
    )


def scale(rows: int, dim: int, pca_dim: int | None, iterations: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(rows), str(dim), str(pca_dim or 0), str(iterations)]
    print(f"[b] {rows} x {dim}, pca_dim={pca_dim}: subprocess", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    result["meets_targets"] = result["fit_s"] < 60 and result["peak_rss_gb"] < 4
    print(
        f"    fit {result['fit_s']:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB (data {result['data_gb']:.2f} GB), "
        f"rel_error {result['rel_error']:.4f}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller data, one repeat (a smoke run).")
    parser.add_argument("--warehouse", default="warehouse", help="Where to look for beauty/item_profiles.")
    parser.add_argument("--embeddings", help="An .npz whose array `items` (n, D) is compared too.")
    parser.add_argument(
        "--embeddings-codes", type=int, default=CODES, help="Codes per level for --embeddings (a power of 2)."
    )
    parser.add_argument("--parts", default="a,b", help="Which parts to run: a, b or a,b.")
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rows, dim, pca_dim, iterations = args.child
        scale_child(rows, dim, pca_dim or None, iterations)
        return

    repeats = 1 if args.quick else 2
    rows_a, rows_b = (20_000, 100_000) if args.quick else (100_000, 1_000_000)
    grid = [(10, 256), (20, 256), (10, None)]
    parts = set(args.parts.split(","))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and parts != {"a", "b"} else {}
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_avg_at_start": os.getloadavg(),
    }
    results["config"] = {"levels": LEVELS, "codes": CODES, "repeats": repeats}
    if "a" in parts:
        results["a_machine"] = machine
        results["a_vs_faiss"] = [
            compare(f"synthetic clustered {rows_a} x 64", clustered(rows_a, 64, 500, seed=0), repeats, grid)
        ]
        beauty = beauty_embeddings(args.warehouse)
        if beauty is None:
            note = f"no {args.warehouse}/beauty/item_profiles table yet"
            results["a_vs_faiss"].append({"data": "beauty item embeddings", "skipped": note})
            print(f"[a] beauty item embeddings: skipped ({note})")
        else:
            results["a_vs_faiss"].append(compare("beauty item embeddings", beauty, repeats, grid))
        if args.embeddings:
            with np.load(args.embeddings) as npz:
                extra = np.ascontiguousarray(npz["items"], dtype=np.float32)
            name = f"embeddings file {os.path.basename(args.embeddings)}"
            results["a_vs_faiss"].append(compare(name, extra, repeats, grid, args.embeddings_codes))
        machine["load_avg_at_end"] = os.getloadavg()
    if "b" in parts:
        machine = {**machine, "load_avg_at_start": os.getloadavg()}
        results["b_machine"] = machine
        results["b_scale"] = [scale(rows_b, 256, None, 10), scale(rows_b, 256, 64, 10)]
        machine["load_avg_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
