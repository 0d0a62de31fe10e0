"""How long the statistics of bench/stats.py take on real test-set sizes, and how far the percentile interval is
from BCa (scipy.stats.bootstrap on the same stratified scheme), measured side by side in one process.

    .venv/bin/python benchmarks/stats_speed.py [--repeats 5]

A DFEW test fold has ~2,340 videos (fold 1: 2,341), FERV39k's test split 7,847, a MAFW fold ~2,000 (11 classes).
Predictions are drawn at 60% accuracy with DFEW's class proportions (disgust ~1%, fear ~4%). One core
(OMP_NUM_THREADS=1 is set before numpy loads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

from bench import stats  # noqa: E402

DFEW_PROPS = [0.25, 0.18, 0.26, 0.15, 0.10, 0.012, 0.048]


def fold(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    props = DFEW_PROPS if k == 7 else np.full(k, 1 / k)
    y = rng.choice(k, n, p=props)
    y[:k] = np.arange(k)
    return y, np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'test set':28s} {'videos':>6s} {'interval (2,000)':>17s} {'paired compare':>15s}")
    for name, n, k in (("DFEW fold", 2340, 7), ("MAFW fold (11 classes)", 2000, 11), ("FERV39k test", 7847, 7)):
        y, p = fold(n, k)
        q = fold(n, k, seed=1)[1]
        t_ci = timed(lambda y=y, p=p, k=k: stats.metric_intervals(y, p, k), args.repeats)
        t_cmp = timed(lambda y=y, p=p, q=q, k=k: stats.paired_comparison([(y, p, q)], k), max(1, args.repeats // 2))
        print(f"{name:28s} {n:6d} {t_ci:15.3f} s {t_cmp:13.2f} s")
    # percentile vs BCa on a DFEW-sized fold: the endpoints' difference, in UAR points
    y, p = fold(2340, 7)
    ours = stats.metric_intervals(y, p, 7)["uar"]
    samples = tuple(p[y == c] for c in range(7))

    def uar(*s, axis=-1):
        return np.mean([(x == c).mean(axis=axis) for c, x in enumerate(s)], axis=0)

    t = time.perf_counter()
    bca = sps.bootstrap(samples, uar, n_resamples=2000, method="BCa", vectorized=True, paired=False,
                        random_state=np.random.default_rng(0)).confidence_interval
    t_bca = time.perf_counter() - t
    pct = sps.bootstrap(samples, uar, n_resamples=2000, method="percentile", vectorized=True, paired=False,
                        random_state=np.random.default_rng(0)).confidence_interval
    print(f"DFEW fold UAR 95% interval: ours (percentile) [{100 * ours['lo']:.2f}, {100 * ours['hi']:.2f}]; scipy "
          f"percentile [{100 * pct.low:.2f}, {100 * pct.high:.2f}]; scipy BCa [{100 * bca.low:.2f}, "
          f"{100 * bca.high:.2f}] ({t_bca:.2f} s); BCa - percentile (same draws): "
          f"{100 * (bca.low - pct.low):+.2f} / {100 * (bca.high - pct.high):+.2f} points")


if __name__ == "__main__":
    main()
