"""The benchmark scripts run end to end at tiny sizes and produce their output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sknn_large._engine._network import _ACTIVATIONS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BENCH.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_cpu_quick_prints_tables_and_json(tmp_path):
    # bench_cpu.py --quick must keep working: every section at tiny sizes.
    pytest.importorskip("skorch")
    out = tmp_path / "cpu.json"
    stdout = _run("bench_cpu.py", "--quick", "--out", str(out))
    # The machine line comes first and names the flags that decide bf16.
    assert stdout.startswith("CPU: ")
    assert "avx512_bf16=" in stdout.splitlines()[0]
    assert "| sknn_large | float32 |" in stdout
    assert "| sklearn MLP | float64 | float64 |" in stdout
    assert "skorch default loading" in stdout
    assert "predict_proba" in stdout
    result = json.loads(out.read_text())
    assert set(result["environment"]["cpu_flags"]) >= {"avx2", "avx512f", "amx_bf16"}
    cases = [(r["case"], r["data_dtype"]) for r in result["training"]]
    assert ("sknn_large bf16", "float32") in cases
    assert ("sklearn MLP", "float32") in cases
    rows = result["training"]
    assert rows[0]["ratio_vs_sknn_large"] == 1.0
    assert all(r["ratio_vs_floor"] > 0 and r["ratio_vs_skorch"] > 0 for r in rows)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    assert "sknn_large vs sklearn float64 data" in result["targets"]
    assert "sknn_large bf16 vs skorch" in result["targets"]
    assert "Hardware floor" in stdout
    floor = result["matmul_floor"]
    assert set(floor) == {"float32", "bfloat16"}
    assert all(f["seconds"] > 0 and f["gflops"] > 0 for f in floor.values())
    # One floor pass per round, paired with that round's float32 fits.
    assert len(result["floor_rounds"]) == 1 and result["floor_rounds"][0] > 0
    own = rows[0]
    rounds = zip(own["fit_s_all"], result["floor_rounds"], strict=True)
    paired = [t / f for t, f in rounds]
    assert own["ratio_vs_floor_rounds"] == paired
    assert own["ratio_vs_floor_paired"] == paired[0]
    # Ratios are to the best float32 pass of the run, the rounds' included.
    best = result["floor"]["float32"]["seconds"]
    assert best == min(floor["float32"]["seconds"], *result["floor_rounds"])
    assert own["ratio_vs_floor"] == own["fit_s_median"] / best
    assert result["floor"]["bfloat16"] == floor["bfloat16"]
    assert "ratio_vs_floor_paired" not in rows[1]  # bf16: its own floor
    assert "paired by round" in stdout
    # The kept-buffer pass is timed beside each round's floor pass and printed
    # over it, with the fit over it.
    assert len(result["kept_rounds"]) == 1 and result["kept_rounds"][0] > 0
    assert "kept-buffer pass by round" in stdout
    # The fixed cost a step (a network whose products are negligible) against
    # target 1's margin above the floor.
    fixed = result["fixed_step"]
    assert fixed["step_us"] > 0 and fixed["margin_us"] > 0
    assert fixed["over_margin"] == fixed["step_us"] / fixed["margin_us"]
    assert "fixed cost a step" in stdout
    assert "native bf16 instructions" in stdout
    assert isinstance(result["precision"]["native"], list)
    assert [p["case"] for p in result["prediction"]] == ["sknn_large", "sklearn MLP"]
    assert all(p["rows_per_s"] > 0 for p in result["prediction"])
    # Small cases: one worker process, both libraries, every case.
    small = {r["case"]: r for r in result["cold"]["small"]}
    assert set(small) == {"readme", "digits", "diabetes"}
    assert all(r["ratio"] > 0 for r in small.values())
    assert small["readme"]["sknn_large"]["fresh_process"]
    overhead = result["cold"]["overhead"]
    assert overhead["sknn_large"]["one_step_s"] > 0
    assert all(
        o["predict_row_s"] > 0 and o["partial_fit_s"] > 0 for o in overhead.values()
    )
    assert "sklearn" in overhead
    pipe = result["pipeline"]
    assert pipe["sknn_large"]["wall_s"] > 0 and pipe["ratio"] > 0
    cont = result["contention"]["cases"]
    assert set(cont) == {"main", "readme"}
    assert all(c["ratio_quiet"] > 0 and c["ratio_busy"] > 0 for c in cont.values())
    assert len(result["issue12"]) == 6
    assert "Issue 12 targets" in stdout
    # Every public activation, each on the hand-derived step, beside
    # scikit-learn's fit for the four it has.
    acts = result["activations"]
    assert list(acts) == list(_ACTIVATIONS)
    assert all(a["hand_derived"] and a["sknn_large_s"] > 0 for a in acts.values())
    assert acts["relu"]["vs_relu"] == 1.0
    with_sklearn = {n for n, a in acts.items() if "vs_sklearn" in a}
    assert with_sklearn == {"identity", "logistic", "tanh", "relu"}
    assert "## Activations" in stdout
    # bfloat16 against float32 as the layers widen; both accuracies.
    sweep = result["bf16_widths"]
    widths = sweep["widths"]
    # A CPU that emulates bfloat16 runs the first width only.
    assert list(widths) == (["16", "32"] if sweep["native"] else ["16"])
    assert all(w["bf16_over_fp32"] > 0 for w in widths.values())
    assert all(0 <= w["bfloat16_acc"] <= 1 for w in widths.values())
    assert "## bfloat16 by width" in stdout
    # L-BFGS: the user-guide example in a fresh process, then warm fits by
    # size; both libraries run the same iterations to the same scores.
    lbfgs = result["lbfgs"]
    (guide,) = lbfgs["cold"]
    assert guide["case"] == "userguide" and guide["sknn_large"]["fresh_process"]
    assert guide["sknn_large"]["score"] == guide["sklearn"]["score"]
    assert len(lbfgs["warm"]) == 2
    for row in lbfgs["warm"]:
        ours, theirs = row["sknn_large"], row["sklearn"]
        assert ours["n_iter"] == theirs["n_iter"] == 3
        assert ours["score"] == pytest.approx(theirs["score"], abs=0.02)
        assert row["ratio"] == ours["s"] / theirs["s"]
    assert "## L-BFGS: warm fits by size" in stdout


def test_bench_cpu_cases_selects_sections(tmp_path):
    # --cases runs only the named sections; a loader replaces the registry.
    out = tmp_path / "cpu.json"
    _run(
        "bench_cpu.py",
        "--quick",
        "--cases",
        "pipeline",
        "--pipeline-loader",
        "bench_cpu:synthetic_mixed",
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    assert "training" not in result and "cold" not in result
    assert result["pipeline"]["dataset"] == "bench_cpu:synthetic_mixed"
    assert list(result["issue12"]) == ["3. pipeline CV 2x faster than sklearn"]


def test_bench_gpu_dry_run_covers_every_section(tmp_path):
    # bench_gpu.py --dry-run (CPU, tiny) exercises sections (a)-(e) and writes JSON.
    pytest.importorskip("skorch")
    out = tmp_path / "gpu.json"
    stdout = _run("bench_gpu.py", "--dry-run", "--out", str(out))
    for title in ("(a) matmul", "(b) small", "(c) large", "(d) predict", "(e) GPU"):
        assert title in stdout
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    assert "errors" not in result, result.get("errors")
    assert set(result["matmul"]) == {"bfloat16", "tf32"}
    small = {r["case"]: r for r in result["small"]}
    assert small["sknn_large (default: float32, alpha=1e-4)"]["end_to_end"] > 0
    assert small["torch loop in a CUDA graph"]["skipped"] == "needs CUDA"
    assert all("tflops" in r for r in result["large"])
    assert result["check"]["passed"]


def test_bench_bound_quick_checks_the_cpp_step_and_times_each_piece(tmp_path):
    # bench_bound.py compiles the hand-derived step's kernels as one C++ call;
    # it must compute sknn_large's gradient exactly, or its time says nothing.
    import shutil

    if shutil.which("c++") is None or shutil.which("ninja") is None:
        pytest.skip("bench_bound.py needs a C++ compiler and ninja")
    out = tmp_path / "bound.json"
    stdout = _run("bench_bound.py", "--quick", "--repeats", "1", "--out", str(out))
    assert stdout.startswith("CPU: ")
    result = json.loads(out.read_text())
    assert result["gradient_gap"] <= 1e-5
    rows = result["rows"]
    assert list(rows)[-2:] == ["+ penalty and Adam: the whole step", "sknn_large fit"]
    assert len(rows) == 7
    assert all(r["paired"] > 0 and len(r["seconds"]) == 1 for r in rows.values())
    assert "the whole step from C++" in stdout
    assert "sknn_large's fit over the whole C++ step" in stdout
