"""The example scripts run end to end and print what they promise."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# What each example must print: the metric names its docstring promises.
EXPECTED_OUTPUT = {
    "plot_vectorized_search.py": [
        "best:",
        "held-out accuracy",
        "members:",
        "ensemble:",
    ],
    "plot_quickstart.py": ["trained on ", "accuracy:", "recall:", "F1:"],
    "plot_workflow.py": [
        "best validation accuracy:",
        "baseline: accuracy=",
        "recall=",
        "F1=",
        "best parameters:",
        "best cross-validated F1:",
        "tuned: accuracy=",
    ],
    "plot_autoencoder.py": [
        "epochs: 100",
        "final training loss (half MSE):",
        "test reconstruction MSE:",
        "test R² (variance-weighted):",
    ],
    "plot_grid_search_heatmap.py": [
        "best parameters:",
        "best cross-validated accuracy:",
    ],
    "plot_learning_curves.py": [
        "fixed epochs: epochs=60 test accuracy=",
        "early stopping: epochs=",
        "best validation accuracy=",
    ],
    "plot_gpu.py": [
        "CUDA available:",
        "precision=auto: device=",
        "precision=bfloat16: device=",
        "test accuracy=",
        "module_ parameters on:",
    ],
    "plot_tabular.py": [
        "sklearn MLPRegressor: R2=",
        "TabularMLPRegressor: R2=",
        "HistGradientBoosting: R2=",
    ],
    "plot_compare_sklearn.py": [
        "MLPClassifier: epochs=",
        "LargeMLPClassifier: epochs=",
        "test accuracy=",
        "fit time=",
    ],
}

# Slow examples whose behaviour another test covers: the heatmap's grid search
# over penalty and alpha is also run by plot_workflow.py; the learning-curve
# plots are TrainingCurveDisplay, tested in test_plotting.py.
SLOW = {"plot_grid_search_heatmap.py", "plot_learning_curves.py"}


def _params() -> list:
    return [
        pytest.param(
            name,
            marks=[pytest.mark.slow] if name in SLOW else [],
            id=name.removesuffix(".py"),
        )
        for name in sorted(EXPECTED_OUTPUT)
    ]


def _run(script: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg")
    # Tiny networks gain nothing from intra-op threads, and on a busy machine
    # OpenMP's spinning threads can make them many times slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_every_example_is_tested():
    # A new examples/plot_*.py must be added to EXPECTED_OUTPUT to be run here.
    found = {p.name for p in EXAMPLES.glob("plot_*.py")}
    assert found == set(EXPECTED_OUTPUT)


@pytest.mark.parametrize("name", _params())
def test_example_runs(name):
    # Each example exits 0 and prints the metric names it promises.
    script = EXAMPLES / name
    if "matplotlib" in script.read_text() and not importlib.util.find_spec(
        "matplotlib"
    ):
        pytest.skip("this example needs matplotlib")
    result = _run(script)
    assert result.returncode == 0, result.stderr[-3000:]
    for text in EXPECTED_OUTPUT[name]:
        assert text in result.stdout, f"{text!r} missing from:\n{result.stdout}"


def test_readme_commands_point_at_real_files():
    # The README's two set-up commands name files that exist; the test command
    # is the exact line the CI script runs.
    readme = (ROOT / "README.md").read_text()
    quick = (
        "python -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0"
        " && pip install -e . && python examples/plot_quickstart.py"
    )
    tests = (
        "python -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0"
        ' && pip install -e ".[test]" && python -m pytest'
    )
    assert quick in readme
    assert tests in readme
    for path in re.findall(r"python (examples/\S+\.py)", readme):
        assert (ROOT / path).is_file(), path
