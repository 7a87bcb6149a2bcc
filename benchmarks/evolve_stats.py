"""Simulated statistics of issue 16: how often the comparison's rules promote, or raise an alarm, when they should not,
and when they should. About 100 seeds per row; a few minutes on 2 cores.

- Paired holdout (what `promote_if_better` runs): the champion is right on each row with probability 0.80. The
  candidate is "the champion plus noise": on a random 20% of the rows its answer is drawn again, right with
  probability 0.80 (no gain: its expected accuracy stays 0.80) or 0.95 (a real gain of 3 accuracy points). The rule:
  promote when `paired_bootstrap("accuracy", ...)`'s 95% lower bound is above 0.
- A/B split (what `verdict` judges): two variants on different rows, accuracies 0.80 / 0.80 (no gain) or 0.80 / 0.83,
  promote when `split_bootstrap`'s lower bound is above 0; at the size `verdict`'s two-proportion formula says gives
  80% power.
- Canary guards: `error_rate_test` on equal error rates (its false alarms at p < 0.05), and on 1% against 3%;
  `p99_interval` on equal latency distributions (a false "slower" when its lower bound is above 0).

Run: python benchmarks/evolve_stats.py [--seeds 100]; writes the markdown table to /tmp/w/bench16-stats.md.
"""
import argparse
import math
import time

import numpy as np

from nbdeploy.compare import error_rate_test, p99_interval, paired_bootstrap, split_bootstrap, verdict, _z


def paired_holdout(n, redrawn_right, seed, share=0.2, base=0.8):
    "Truth and two predictions on n rows: b is a with a random `share` of its rows drawn again."
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < base, y, 1 - y)
    again = rng.random(n) < share
    b = np.where(again, np.where(rng.random(n) < redrawn_right, y, 1 - y), a)
    return y, a, b


def split_arms(n, acc_a, acc_b, seed):
    "Truth and predictions of two arms of n rows each, right with probability acc_a and acc_b."
    rng = np.random.default_rng(seed)
    ya, yb = rng.integers(0, 2, n), rng.integers(0, 2, n)
    return (ya, np.where(rng.random(n) < acc_a, ya, 1 - ya), yb, np.where(rng.random(n) < acc_b, yb, 1 - yb))


def rate(hits):
    "A share and its Wilson 95% interval, as text."
    from scipy.stats import binomtest
    k, n = int(sum(hits)), len(hits)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return k / n, f"{k}/{n} = {k / n:.0%} [{ci.low:.0%}, {ci.high:.0%}]"


def main(seeds=100):
    rows, t0 = [], time.time()

    def add(what, n, target, hits, ok):
        share, text = rate(hits)
        rows.append((what, n, target, text, "yes" if ok(share) else "**no**"))
        print(rows[-1], f"{time.time() - t0:.0f} s", flush=True)

    # (a), (b): the paired holdout rule of promote_if_better
    for n in (200, 500, 1000):
        noise = [paired_bootstrap("accuracy", *paired_holdout(n, 0.80, s))[1] > 0 for s in range(seeds)]
        add("paired holdout, no gain: promoted", n, "<= 5%", noise, lambda r: r <= 0.05)
    for n in (200, 500, 1000):
        gain = [paired_bootstrap("accuracy", *paired_holdout(n, 0.95, s))[1] > 0 for s in range(seeds)]
        add("paired holdout, +3 points: promoted", n, ">= 80% at n >= 500", gain,
            lambda r, n=n: r >= 0.8 if n >= 500 else True)
    # A/B split at the size the two-proportion formula gives for 80% power
    _, z = _z(0.95, 0.8)
    arm = math.ceil(z ** 2 * (0.8 * 0.2 + 0.83 * 0.17) / 0.03 ** 2)
    v = verdict(0.03, -0.01, 0.07, (1, 1), rates=(0.80, 0.83))
    assert abs(v["needed"] + 2 - 2 * arm) <= 2, (v, arm)  # verdict's `needed` is this formula
    noise = [split_bootstrap("accuracy", *split_arms(arm, 0.80, 0.80, s))[1] > 0 for s in range(seeds)]
    add("A/B split, no gain: promoted", f"{arm} an arm", "<= 5%", noise, lambda r: r <= 0.05)
    gain = [split_bootstrap("accuracy", *split_arms(arm, 0.80, 0.83, s))[1] > 0 for s in range(seeds)]
    add("A/B split, +3 points: promoted (verdict's 80%-power size)", f"{arm} an arm", "about 80%", gain,
        lambda r: r >= 0.7)
    # (c): the canary's error-rate test
    rng = np.random.default_rng(0)
    for n, p in ((100, 0.02), (2000, 0.01)):
        alarms = [error_rate_test(rng.binomial(n, p), n, rng.binomial(n, p), n)["p_value"] < 0.05 for _ in range(seeds)]
        test = error_rate_test(1, n, 1, n)["test"]
        add(f"error rates equal ({p:.0%}), {test}: false alarms", f"{n} a side", "<= 5%", alarms, lambda r: r <= 0.05)
    alarms = [error_rate_test(rng.binomial(2000, 0.01), 2000, rng.binomial(2000, 0.03), 2000)["p_value"] < 0.05
              for _ in range(seeds)]
    add("error rates 1% vs 3%, fisher: alarms", "2000 a side", ">= 80%", alarms, lambda r: r >= 0.8)
    slower = [p99_interval(rng.gamma(4, 2, 1000), rng.gamma(4, 2, 1000), seed=s)[1] > 0 for s in range(seeds)]
    add("p99 equal: 'slower' (lower bound > 0)", "1000 a side", "<= 5%", slower, lambda r: r <= 0.05)

    head = ("| rule | sample | target | observed (95% Wilson interval) | met |\n"
            "|---|---|---|---|---|\n")
    table = head + "".join(f"| {a} | {b} | {c} | {d} | {e} |\n" for a, b, c, d, e in rows)
    note = (f"\n{seeds} seeds per row; {time.time() - t0:.0f} s in all. Paired holdout: the champion is right on 80% of"
            " the rows; the candidate redraws 20% of its answers, right on 80% of those (no gain) or 95% (+3 accuracy"
            " points); promote when paired_bootstrap's 95% lower bound is above 0 (1,000 resamples). A/B: the arm size"
            f" is verdict's two-proportion formula for 80% power at 80% vs 83% ({arm} rows an arm).\n")
    out = "## Statistics, simulated (benchmarks/evolve_stats.py)\n\n" + table + note
    print(out)
    with open("/tmp/w/bench16-stats.md", "w") as f: f.write(out)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    main(ap.parse_args().seeds)
