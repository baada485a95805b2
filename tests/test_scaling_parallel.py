"""Scaling out: Dask and Ray integrations and the per-worker device choice."""

import os
import shutil
import subprocess
import sys
import types
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate

import sknn_large._parallel as parallel
from sknn_large import LargeMLPClassifier
from sknn_large._parallel import (
    WorkerInfo,
    choose_cuda_index,
    current_worker,
    worker_device,
)

_OPTIONAL = ("dask", "distributed", "dask_ml", "ray")


def _data():
    X, y = make_classification(
        n_samples=240, n_features=8, n_informative=5, random_state=0
    )
    return X.astype(np.float32), y


def _small_mlp(**params):
    base = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=0)
    base.update(params)
    return LargeMLPClassifier(**base)


def _searches():
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (8,)]}
    return {
        "grid": lambda n_jobs: GridSearchCV(_small_mlp(), grid, cv=3, n_jobs=n_jobs),
        "random": lambda n_jobs: RandomizedSearchCV(
            _small_mlp(),
            {"alpha": [1e-5, 1e-3, 1e-1], "learning_rate_init": [1e-3, 1e-2]},
            n_iter=4,
            cv=3,
            random_state=0,
            n_jobs=n_jobs,
        ),
    }


def _assert_same_search(parallel_search, serial_search):
    for key in ("mean_test_score", "std_test_score"):
        np.testing.assert_array_equal(
            parallel_search.cv_results_[key], serial_search.cv_results_[key]
        )
    assert parallel_search.best_params_ == serial_search.best_params_


@pytest.fixture(scope="module")
def serial_results():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        searches = {k: make(1).fit(X, y) for k, make in _searches().items()}
        cv = cross_validate(_small_mlp(), X, y, cv=3, n_jobs=1)
    return searches, cv


# ---------------------------------------------------------------- imports


def test_import_does_not_load_dask_or_ray():
    # Dask and Ray are optional extras: importing the package (and its
    # parallel helpers) must not import them.
    code = (
        "import sys, sknn_large, sknn_large._parallel, sknn_large._data;"
        f"print([m for m in {_OPTIONAL!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------- device per worker


def _fake_cuda(monkeypatch, n: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_worker_device_without_cuda_is_cpu(monkeypatch):
    # No GPU: "auto" is the CPU whatever the worker; explicit specs pass through.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device() == torch.device("cpu")
    assert worker_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        worker_device("cuda:1")


def test_choose_cuda_index_rules():
    # The pure rules: Ray's assignment, one visible GPU, round-robin by slot.
    ray = WorkerInfo("ray", None, ("2",))
    assert choose_cuda_index(ray, 1, ["2"]) == 0  # Ray narrowed the view
    assert choose_cuda_index(ray, 4, ["0", "1", "2", "3"]) == 2
    assert choose_cuda_index(ray, 4, None) == 2
    assert choose_cuda_index(WorkerInfo("ray", None, ("GPU-ab",)), 2, None) == 0
    for slot in range(6):
        info = WorkerInfo("dask", slot)
        assert choose_cuda_index(info, 1, ["5"]) == 0
        assert choose_cuda_index(info, 3, None) == slot % 3
    assert choose_cuda_index(WorkerInfo(), 4, None) == 0


def test_worker_device_under_fake_ray(monkeypatch):
    # A Ray task given GPU 3 of four visible ones runs on cuda:3; with Ray's
    # usual narrowing of CUDA_VISIBLE_DEVICES to "3" it is cuda:0.
    ray = types.SimpleNamespace(is_initialized=lambda: True, get_gpu_ids=lambda: [3])
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    _fake_cuda(monkeypatch, 4)
    assert current_worker() == WorkerInfo("ray", None, ("3",))
    assert worker_device() == torch.device("cuda", 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    _fake_cuda(monkeypatch, 1)
    assert worker_device() == torch.device("cuda", 0)


def test_worker_device_under_fake_dask(monkeypatch):
    # Dask workers named 0..3 spread over two GPUs; outside a task the lookup
    # fails quietly and the process is "no worker".
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, 2)
    for name, expected in [(0, 0), (1, 1), (2, 0), ("3", 1)]:
        fake = types.SimpleNamespace(
            get_worker=lambda name=name: types.SimpleNamespace(name=name)
        )
        monkeypatch.setitem(sys.modules, "distributed", fake)
        assert worker_device() == torch.device("cuda", expected)

    def not_a_worker():
        raise ValueError("No worker found")

    monkeypatch.setitem(
        sys.modules, "distributed", types.SimpleNamespace(get_worker=not_a_worker)
    )
    monkeypatch.setattr(parallel.multiprocessing, "parent_process", lambda: None)
    assert current_worker() == WorkerInfo()
    assert worker_device() == torch.device("cuda")


def test_worker_device_in_pool_processes(monkeypatch):
    # joblib's loky workers (LokyProcess-N) take GPUs in turn; a worker
    # restricted to one GPU by CUDA_VISIBLE_DEVICES uses it.
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delitem(sys.modules, "distributed", raising=False)
    monkeypatch.setattr(parallel.multiprocessing, "parent_process", lambda: object())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_cuda(monkeypatch, 3)
    for n, expected in [(1, 0), (2, 1), (3, 2), (4, 0)]:
        process = types.SimpleNamespace(name=f"LokyProcess-{n}")
        monkeypatch.setattr(
            parallel.multiprocessing, "current_process", lambda p=process: p
        )
        assert worker_device() == torch.device("cuda", expected)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    _fake_cuda(monkeypatch, 1)
    assert worker_device() == torch.device("cuda", 0)


def test_worker_slots_in_real_loky_workers():
    # Real joblib workers identify themselves as numbered pool processes.
    infos = joblib.Parallel(n_jobs=2)(
        joblib.delayed(current_worker)() for _ in range(4)
    )
    assert all(i.framework == "pool" and i.slot is not None for i in infos)


# --------------------------------------------------------------------- Dask


def test_partial_fit_with_dask_ml_incremental():
    # dask-ml's Incremental feeds each block of a Dask array to partial_fit in
    # turn: the result equals calling partial_fit on the blocks by hand.
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=80), da.from_array(y, chunks=80)
    inc = wrappers.Incremental(_small_mlp(), shuffle_blocks=False)
    inc.fit(Xd, yd, classes=[0, 1])
    by_hand = _small_mlp()
    for s in range(0, 240, 80):
        by_hand.partial_fit(X[s : s + 80], y[s : s + 80], classes=[0, 1])
    for a, b in zip(inc.estimator_.coefs_, by_hand.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(inc.predict(Xd).compute(), by_hand.predict(X))
    assert inc.estimator_.n_iter_ == by_hand.n_iter_
    assert 0.0 <= inc.score(Xd, yd) <= 1.0


@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    # A real scheduler and two worker processes, on the loopback interface.
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        local_directory=str(tmp_path_factory.mktemp("dask")),
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.mark.parametrize("kind", ["grid", "random"])
def test_search_on_dask_cluster_equals_serial(dask_client, serial_results, kind):
    # GridSearchCV/RandomizedSearchCV with n_jobs=-1 on a Dask cluster score
    # exactly as the serial search does and pick the same parameters.
    distributed = pytest.importorskip("distributed")
    X, y = _data()
    with (
        distributed.get_task_stream(dask_client) as tasks,
        joblib.parallel_backend("dask"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        search = _searches()[kind](-1).fit(X, y)
    _assert_same_search(search, serial_results[0][kind])
    # The fits ran as tasks on the cluster's worker processes.
    assert len(tasks.data) > 0
    workers = dask_client.run(os.getpid)
    assert {t["worker"] for t in tasks.data} <= set(workers)
    assert os.getpid() not in workers.values()


def test_cross_validate_on_dask_cluster_equals_serial(dask_client, serial_results):
    # cross_validate's fits on the cluster reproduce the serial test scores.
    X, y = _data()
    with joblib.parallel_backend("dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = cross_validate(_small_mlp(), X, y, cv=3, n_jobs=-1)
    np.testing.assert_array_equal(cv["test_score"], serial_results[1]["test_score"])


def test_dask_tasks_see_their_worker(dask_client):
    # Inside a task the device chooser knows the Dask worker it runs on.
    names = sorted(
        dask_client.scheduler_info()["workers"][a]["name"]
        for a in dask_client.scheduler_info()["workers"]
    )
    futures = [dask_client.submit(current_worker, pure=False) for _ in range(6)]
    infos = dask_client.gather(futures)
    assert {i.framework for i in infos} == {"dask"}
    assert {i.slot for i in infos} <= set(names)


# ---------------------------------------------------------------------- Ray
#
# A local Ray instance listens on every interface of its network namespace and
# talks to the node address it detects. This workplace allows test traffic on
# loopback only, so the test runs Ray inside a private network namespace whose
# only interface is loopback: nothing it sends can leave the machine.


def _private_network_prefix() -> list[str] | None:
    """A command prefix running its command in a loopback-only network, or None."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None or sys.platform != "linux":
        return None
    prefix = [unshare, "--net"]
    if os.geteuid() != 0:
        prefix.append("--map-root-user")
    probe = subprocess.run(
        [*prefix, ip, "link", "set", "lo", "up"], capture_output=True, timeout=30
    )
    return prefix if probe.returncode == 0 else None


@pytest.mark.skipif(
    os.environ.get("SKNN_LARGE_TEST_RAY") != "1",
    reason="runs inside a loopback-only network namespace; "
    "test_search_on_ray_in_private_network starts it there",
)
def test_search_on_ray_equals_serial(serial_results):
    # The same searches under Ray's joblib backend reproduce the serial ones.
    ray = pytest.importorskip("ray")
    ray_joblib = pytest.importorskip("ray.util.joblib")
    X, y = _data()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_joblib.register_ray()
        with joblib.parallel_backend("ray"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searches = {k: make(-1).fit(X, y) for k, make in _searches().items()}
            cv = cross_validate(_small_mlp(), X, y, cv=3, n_jobs=-1)
            backend, _ = joblib.parallel.get_active_backend()
    finally:
        ray.shutdown()
    assert type(backend).__name__ == "RayBackend"
    for kind, search in searches.items():
        _assert_same_search(search, serial_results[0][kind])
    np.testing.assert_array_equal(cv["test_score"], serial_results[1]["test_score"])


def test_search_on_ray_in_private_network():
    # Runs the Ray test above in a fresh network namespace with loopback only.
    pytest.importorskip("ray.util.joblib")
    prefix = _private_network_prefix()
    if prefix is None:
        pytest.skip("needs Linux with unshare(1) and ip(8) to make a private network")
    node = f"{__file__}::test_search_on_ray_equals_serial"
    script = (
        f"ip link set lo up && exec {sys.executable} -m pytest -q "
        f"-p no:cacheprovider -o addopts='' {node}"
    )
    env = dict(os.environ, SKNN_LARGE_TEST_RAY="1", RAY_USAGE_STATS_ENABLED="0")
    run = subprocess.run(
        [*prefix, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "1 passed" in run.stdout
