"""Issue 12, target 1: the main case's step with no Python in it, against the floor.

Target 1 holds the main case's fit (``bench_cpu.py``'s 40,000 x 50 rows,
50 -> 256 -> 256 -> 5, batch 256, 5 epochs of Adam) to 1.4x the step's matrix
products alone. A trainer issues more than those products: the batch gather,
the activations and their derivatives, the loss, the bias gradients, the
penalty and the optimizer update, each a call into PyTorch's kernels (ATen),
and each call from Python costs microseconds of dispatch on top. This
benchmark splits the two. It compiles ``_aten_step.cpp``, an epoch of the
same kernels sknn_large's hand-derived step calls, issued from C++ with no
Python between them (:func:`torch.utils.cpp_extension.load_inline`: a C++
compiler and ninja, about 30 s the first time, cached after), checks that its
gradients are the hand-derived step's, then times, in rounds:

* the floor pass (``bench_cpu.floor_timer``: the step's products, fixed
  operands, fresh outputs);
* the C++ epoch with its pieces switched on one after another: the products
  in the step's dataflow, then the gather, the activations, the loss, the
  bias gradients, and the penalty and Adam update: the whole step;
* sknn_large's fit of the same case (``--no-fit`` leaves it out).

Each is printed over the floor pass timed at the start of its round (paired
medians) and over the run's best floor pass (target 1's own rule). Where the
whole step from C++ is over 1.4x, no trainer made of these kernels meets
target 1 on that machine, whatever it does about Python; the fit over the
C++ step is what dispatch from Python costs there.

Run ``python benchmarks/bench_bound.py`` (about 1 minute after the build),
``--quick`` for a seconds-long smoke version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import cpu_line, environment, median  # noqa: E402
from bench_cpu import FULL, QUICK, Sizes, floor_timer, make_data  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "_aten_step.cpp"

# The C++ epoch's pieces (its ``parts`` bits), switched on cumulatively.
PIECES = (
    ("products in the step's dataflow", 0),
    ("+ batch gather", 1),
    ("+ activations", 3),
    ("+ loss", 7),
    ("+ bias gradients", 15),
    ("+ penalty and Adam: the whole step", 31),
)
WHOLE = PIECES[-1][1]
TARGET = 1.4


def build() -> Any:
    """Compile ``_aten_step.cpp``; None, with the reason printed, if it can't be."""
    missing = [tool for tool in ("c++", "ninja") if shutil.which(tool) is None]
    if missing:
        print(f"cannot build the C++ step: {', '.join(missing)} not found")
        return None
    from torch.utils.cpp_extension import load_inline

    start = time.perf_counter()
    module = load_inline(
        name="sknn_large_bench_aten_step",
        cpp_sources=[SOURCE.read_text()],
        functions=["epoch"],
        extra_cflags=["-O2"],
    )
    print(f"built the C++ step in {time.perf_counter() - start:.1f} s")
    return module


class AtenStep:
    """The C++ epoch on one member's parameters, laid out as sknn_large's.

    Parameters
    ----------
    module : module
        What :func:`build` returned.
    sizes : Sizes
        The benchmark's problem (widths, batch size, epochs, rate, alpha).
    X, y : Tensor
        Training rows (float32) and class indices (int64).
    """

    def __init__(self, module: Any, sizes: Sizes, X: torch.Tensor, y: torch.Tensor):
        from sknn_large._engine._stack import ParamStack

        self.module, self.sizes, self.X, self.y = module, sizes, X, y
        widths = [X.shape[1], *sizes.hidden, sizes.n_classes]
        gen = torch.Generator().manual_seed(sizes.seed)
        n = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.stack = ParamStack(widths, 0.05 * torch.randn(1, n, generator=gen))
        st, nw = self.stack, self.stack.n_weights
        self.m, self.v = torch.zeros_like(st.theta[0]), torch.zeros_like(st.theta[0])
        flat = (st.theta[0], st.grad[0], self.m, self.v)
        self.adam_w = [t[:nw] for t in flat]
        self.adam_b = [t[nw:] for t in flat]
        self.count = torch.zeros(())
        self.gen = gen

    def epoch(self, parts: int, perm: torch.Tensor, lr: float) -> None:
        """One pass over the rows of ``perm`` (whole batches) with ``parts``."""
        st, b = self.stack, self.sizes.batch_size
        views = st._rank_views()  # the layouts sknn_large's step takes here
        self.module.epoch(
            self.X, self.y, perm, b,
            [w[0] for w in st.W], [c[0] for c in st.b],
            [g[0] for g in st.gW], [g[0:1] for g in st.gb],
            self.adam_w, self.adam_b, self.count,
            lr, self.sizes.alpha, parts,
            [int(n) for n in views.narrow], [int(n) for n in views.grad_narrow],
        )  # fmt: skip

    def fit(self, parts: int) -> float:
        """Seconds for the run's epochs, each on a fresh permutation."""
        start = time.perf_counter()
        for _ in range(self.sizes.epochs):
            perm = torch.randperm(self.X.shape[0], generator=self.gen)
            self.epoch(parts, perm, self.sizes.lr)
        return time.perf_counter() - start

    def check(self) -> float:
        """Largest difference from the hand-derived step's gradient, over its largest.

        One batch through both (no update): the C++ step must compute what
        sknn_large's does, or its time says nothing about it.
        """
        from sknn_large._engine._losses import _LOSSES

        st, b = self.stack, self.sizes.batch_size
        rows = torch.arange(b)
        self.epoch(WHOLE & ~16, rows, 0.0)
        ours = st.grad.clone()
        x, y = self.X[:b].unsqueeze(0), self.y[:b].unsqueeze(0)
        st.hand_step(x, y, 1.0 / b, "relu", _LOSSES["log_loss"], None)
        return float((ours - st.grad).abs().max() / st.grad.abs().max())


def sknn_fit(sizes: Sizes, X: np.ndarray, y: np.ndarray) -> float:
    """Seconds for sknn_large's fit of the case (bench_cpu's parameters)."""
    from bench_cpu import _mlp_params

    from sknn_large import LargeMLPClassifier

    est = LargeMLPClassifier(**_mlp_params(sizes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 epochs do not converge
        start = time.perf_counter()
        est.fit(X, y)
    return time.perf_counter() - start


def run(sizes: Sizes, rounds: int, with_fit: bool) -> dict[str, Any] | None:
    """Time the floor, each piece of the C++ step and the fit, in ``rounds``."""
    module = build()
    if module is None:
        return None
    X_train, _, y_train, _ = make_data(sizes)
    X32 = np.ascontiguousarray(X_train, dtype=np.float32)
    step = AtenStep(module, sizes, torch.from_numpy(X32), torch.from_numpy(y_train))
    gap = step.check()
    print(f"C++ step's gradient against the hand-derived step's: {gap:.1e} apart")
    if gap > 1e-5:
        raise AssertionError("the C++ step does not compute sknn_large's step")
    floor = floor_timer(sizes, X32.shape[0])
    names = [name for name, _ in PIECES] + (["sknn_large fit"] if with_fit else [])
    for _, parts in PIECES:  # warm up
        step.fit(parts)
    if with_fit:
        sknn_fit(sizes, X32, y_train)
    floors, times = [], {name: [] for name in names}
    for _ in range(rounds):
        floors.append(floor())
        for name, parts in PIECES:
            times[name].append(step.fit(parts))
        if with_fit:
            times["sknn_large fit"].append(sknn_fit(sizes, X32, y_train))
    best = min(floors)
    rows = {
        name: {
            "seconds": ts,
            "paired": median([t / f for t, f in zip(ts, floors, strict=True)]),
            "over_best_floor": median(ts) / best,
        }
        for name, ts in times.items()
    }
    return {"floor_rounds": floors, "rows": rows, "gradient_gap": gap}


def report(result: dict[str, Any]) -> list[str]:
    """The table and the verdict on target 1, as lines."""
    best = min(result["floor_rounds"])
    lines = [
        f"floor pass: best {best:.3f} s of {len(result['floor_rounds'])} rounds",
        "| step | median s | over the round's floor (paired) | over the best floor |",
        "|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {median(row['seconds']):.3f} | {row['paired']:.2f}x"
            f" | {row['over_best_floor']:.2f}x |"
        )
    whole = result["rows"][PIECES[-1][0]]["over_best_floor"]
    if whole > TARGET:
        verdict = (
            f"the whole step from C++, with no Python, is {whole:.2f}x the floor:"
            f" over target 1's {TARGET}x, so no trainer made of these kernels"
            " meets target 1 on this machine"
        )
    else:
        verdict = (
            f"the whole step from C++ is {whole:.2f}x the floor, within target"
            f" 1's {TARGET}x: what lies between it and the fit is dispatch"
        )
    lines.append(verdict)
    fit = result["rows"].get("sknn_large fit")
    if fit is not None:
        lines.append(
            f"sknn_large's fit over the whole C++ step: "
            f"{fit['over_best_floor'] / whole:.2f}x (what issuing the step from"
            " Python costs here)"
        )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the benchmark, print its table, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--no-fit", action="store_true", help="leave sknn_large out")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    sizes = replace(QUICK if args.quick else FULL, repeats=args.repeats)
    env = environment(torch.device("cpu"))
    print(cpu_line(env))
    result = run(sizes, args.repeats, not args.no_fit)
    if result is None:
        return None
    for line in report(result):
        print(line)
    result["environment"] = env
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
