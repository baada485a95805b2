"""Time one fit with two checkouts of sknn_large, alternating fresh processes.

Answers "did this change make training slower?" side by side on one machine:
each round runs the same fit once per checkout, each in a fresh process that
imports that checkout's package, and prints wall and CPU seconds.

Usage::

    git worktree add /tmp/before <commit>
    python benchmarks/bench_checkouts.py /tmp/before . --rounds 3
    python benchmarks/bench_checkouts.py /tmp/before . --threads 1 \
        --rows 20000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from _common import cpu_line, environment

_CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
root, rows, epochs, threads, hidden, batch = sys.argv[1:7]
sys.path.insert(0, root)
import numpy as np, torch
if int(threads):
    torch.set_num_threads(int(threads))
from sklearn.datasets import make_classification
from sknn_large import LargeMLPClassifier
X, y = make_classification(n_samples=int(rows) * 5 // 4, n_features=50,
    n_informative=30, n_redundant=0, n_classes=5, random_state=0)
X, y = X[: int(rows)].astype(np.float32), y[: int(rows)]
kw = dict(hidden_layer_sizes=tuple(int(h) for h in hidden.split(",")),
    batch_size=int(batch), max_iter=int(epochs), tol=0, n_iter_no_change=10**6,
    random_state=0)
LargeMLPClassifier(**dict(kw, max_iter=1)).fit(X[:2000], y[:2000])  # warm-up
t, c = time.perf_counter(), time.process_time()
m = LargeMLPClassifier(**kw).fit(X, y)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
    "loss": m.loss_}))
"""


def main(argv=None) -> None:
    """Parse arguments, run the rounds, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="+", help="repository roots to compare")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)
    print(cpu_line(environment(torch.device("cpu"))))
    times: dict[str, list[dict]] = {c: [] for c in args.checkouts}
    for _ in range(args.rounds):
        for root in args.checkouts:
            cmd = [sys.executable, "-c", _CHILD, str(Path(root).resolve())]
            cmd += [str(args.rows), str(args.epochs), str(args.threads)]
            cmd += [args.hidden, str(args.batch)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times[root].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| checkout | wall s per round | median | CPU s median | final loss |")
    print("|---|---|---|---|---|")
    for root, runs in times.items():
        # Three decimals: a small fit takes a tenth of a second.
        walls = " / ".join(f"{r['wall']:.3f}" for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"| {root} | {walls} | {wall:.3f} | {cpu:.3f} | {runs[0]['loss']:.5f} |")
    first, *others = args.checkouts
    for root in others:
        # Each round's pair ran a minute apart at most: their ratio drifts
        # less than either time.
        pairs = zip(times[root], times[first], strict=True)
        ratios = sorted(a["wall"] / b["wall"] for a, b in pairs)
        print(
            f"{root} over {first}, paired by round: median"
            f" {statistics.median(ratios):.3f}x (min {ratios[0]:.3f}x,"
            f" max {ratios[-1]:.3f}x)"
        )


if __name__ == "__main__":
    main()
