"""Training behaviour: penalties, dropout, solvers, activations, reproducibility."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._engine import _ACTIVATIONS, _SOLVERS

ALL_SOLVERS = sorted(_SOLVERS)


def _binary_log_loss(clf, X, y):
    # Data term of the objective, recomputed from the public coefs_/intercepts_.
    a = X
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        a = a @ w + b
        if i < len(clf.coefs_) - 1:
            a = np.tanh(a)
    p = expit(a.ravel())
    t = (y == clf.classes_[1]).astype(float)
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.mark.parametrize(
    "penalty, expected",
    [
        ("l2", lambda W, a, r: 0.5 * a * sum((w**2).sum() for w in W)),
        ("l1", lambda W, a, r: a * sum(np.abs(w).sum() for w in W)),
        (
            "elasticnet",
            lambda W, a, r: (
                a * sum(r * np.abs(w).sum() + 0.5 * (1 - r) * (w**2).sum() for w in W)
            ),
        ),
        (None, lambda W, a, r: 0.0),
    ],
)
def test_penalty_formula(penalty, expected, digits_binary):
    # loss_ is the data loss plus the documented penalty divided by n_samples.
    X, y = digits_binary
    alpha, l1_ratio = 0.5, 0.3
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(5,),
        activation="tanh",
        solver="lbfgs",
        alpha=alpha,
        penalty=penalty,
        l1_ratio=l1_ratio,
        max_iter=20,
        random_state=0,
    ).fit(X, y)
    want = _binary_log_loss(clf, X, y) + expected(clf.coefs_, alpha, l1_ratio) / len(X)
    assert clf.loss_ == pytest.approx(want, rel=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_sample_weights_equal_repeated_rows(iris):
    # Full-batch L-BFGS is deterministic: weighting a row by 2 is training on
    # it twice, the penalty included (both divide by the same total).
    X, y = iris
    counts = np.random.RandomState(0).randint(1, 4, len(X))
    kw = dict(
        hidden_layer_sizes=(6,),
        solver="lbfgs",
        alpha=0.1,
        max_iter=25,
        precision="float64",
        random_state=0,
    )
    weighted = LargeMLPClassifier(**kw).fit(X, y, sample_weight=counts)
    repeated = LargeMLPClassifier(**kw).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts)
    )
    assert weighted.n_iter_ == repeated.n_iter_
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-9)
    for a, b in zip(
        weighted.coefs_ + weighted.intercepts_,
        repeated.coefs_ + repeated.intercepts_,
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("penalty", ["l2", "elasticnet"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task", ["classifier", "regressor, 3 outputs"])
def test_lbfgs_hand_step_equals_autograd(penalty, weighted, task, iris, monkeypatch):
    # L-BFGS takes the stochastic loop's step: the hand-derived one where it
    # covers the network, autograd's elsewhere. Both give SciPy the same
    # loss and gradient at any point (compared as functions: over a fit,
    # L-BFGS's line search grows 1e-16 differences to 1e-7 on unscaled iris),
    # and that gradient is the value's, penalty included (central differences;
    # with several outputs too, where scikit-learn's gradient is n_outputs
    # times its reported loss's).
    from sknn_large._engine import _lbfgs

    X, y = iris
    estimator = LargeMLPClassifier
    if task != "classifier":
        estimator, y = LargeMLPRegressor, X[:, 1:] - X[:, :1]
    made = []

    def keep(*args):
        made.append(args)
        return loss_and_grad(*args)

    loss_and_grad = _lbfgs._loss_and_grad
    monkeypatch.setattr(_lbfgs, "_loss_and_grad", keep)
    w = np.random.RandomState(0).rand(len(X)) if weighted else None
    estimator(
        hidden_layer_sizes=(8, 5),
        solver="lbfgs",
        alpha=0.05,
        penalty=penalty,
        max_iter=2,
        precision="float64",
        random_state=0,
    ).fit(X, y, sample_weight=w)
    hand = loss_and_grad(*made[0])
    monkeypatch.setattr(_lbfgs, "uses_hand_step", lambda *args: False)
    autograd = loss_and_grad(*made[0])
    stack = made[0][0]
    rng = np.random.RandomState(1)
    for _ in range(3):
        theta = rng.randn(stack.n_params)
        value, grad = hand(theta)
        want_value, want_grad = autograd(theta)
        assert value == pytest.approx(want_value, rel=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-13)
    step = 1e-6
    for i in rng.choice(stack.n_params, 12, replace=False):
        e = np.zeros(stack.n_params)
        e[i] = step
        slope = (hand(theta + e)[0] - hand(theta - e)[0]) / (2 * step)
        assert grad[i] == pytest.approx(slope, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize(
    "busy, parallel", [(False, False), (True, False), (False, True)]
)
def test_lbfgs_holds_scipy_blas_to_one_thread_unless_alone(
    busy, parallel, iris, monkeypatch
):
    # SciPy's BLAS threads only spin during L-BFGS-B: while another process
    # is busy, or torch trains on more than one thread, they are held to one;
    # a one-thread fit on a quiet machine leaves them alone and does not even
    # look the BLAS libraries up (14 ms for a first fit).
    from threadpoolctl import threadpool_info

    from sknn_large._engine import _lbfgs, _threads

    if parallel:
        # A fit large enough for two torch threads (iris is not).
        monkeypatch.setattr(_lbfgs, "threads_for", lambda *a: _threads._num_threads(2))

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(_threads, "_runnable_others", lambda: 1 if busy else 0)
    looked_up, seen = [], []
    controller, loss_and_grad = _lbfgs._blas_controller, _lbfgs._loss_and_grad

    def lookup():
        looked_up.append(True)
        return controller()

    def watched(*args):
        fun = loss_and_grad(*args)

        def call(theta):
            seen.append(blas_threads())
            return fun(theta)

        return call

    monkeypatch.setattr(_lbfgs, "_blas_controller", lookup)
    monkeypatch.setattr(_lbfgs, "_loss_and_grad", watched)
    before = blas_threads()
    X, y = iris
    LargeMLPClassifier(solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    assert before and seen
    held = busy or parallel
    assert looked_up == ([True] if held else [])
    assert all(s == ([1] * len(before) if held else before) for s in seen)
    assert blas_threads() == before


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_multi_output_loss_averages_over_outputs(iris):
    # loss_ is scikit-learn's squared loss, averaged over samples and outputs
    # (halved), plus the L2 penalty over the rows: the function L-BFGS
    # minimised, recomputed from the public coefs_ and intercepts_.
    X, _ = iris
    Y = X[:, 1:] - X[:, :1]
    reg = LargeMLPRegressor(
        hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.3, max_iter=15, random_state=0
    ).fit(X, Y)
    hidden = np.maximum(X @ reg.coefs_[0] + reg.intercepts_[0], 0)
    out = hidden @ reg.coefs_[1] + reg.intercepts_[1]
    penalty = 0.5 * 0.3 * sum((w**2).sum() for w in reg.coefs_) / len(X)
    assert reg.loss_ == pytest.approx(0.5 * np.mean((Y - out) ** 2) + penalty, rel=1e-9)


def test_l1_gives_sparser_weights_than_l2(digits_binary):
    # L1 drives many weights to (near) zero where L2 only shrinks them.
    X, y = digits_binary
    kw = dict(hidden_layer_sizes=(10,), alpha=2.0, max_iter=300, random_state=0)
    l1 = LargeMLPClassifier(penalty="l1", **kw).fit(X, y)
    l2 = LargeMLPClassifier(penalty="l2", **kw).fit(X, y)
    small = lambda est: np.mean(np.abs(est.coefs_[0]) < 1e-3)
    assert small(l1) > small(l2) + 0.2


def test_biases_are_not_penalised(iris):
    # A huge L2 penalty flattens the weights but leaves the biases free.
    X, y = iris
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(4,), solver="lbfgs", alpha=1e4, random_state=0
    ).fit(X, y)
    assert max(np.abs(w).max() for w in clf.coefs_) < 1e-3
    assert np.abs(clf.intercepts_[-1]).max() > 1e-3


def test_dropout_in_training_only(iris):
    # Dropout layers follow each hidden activation, change training, and are off
    # at prediction time (predictions are deterministic).
    X, y = iris
    kw = dict(hidden_layer_sizes=(32, 16), max_iter=20, random_state=0)
    plain = LargeMLPClassifier(**kw).fit(X, y)
    drop = LargeMLPClassifier(dropout=0.5, **kw).fit(X, y)
    layers = [m for m in drop.module_ if isinstance(m, torch.nn.Dropout)]
    assert len(layers) == 2 and all(m.p == 0.5 for m in layers)
    assert not np.allclose(plain.coefs_[0], drop.coefs_[0])
    np.testing.assert_array_equal(drop.predict_proba(X), drop.predict_proba(X))


def test_dropout_masks_keep_each_unit_with_probability_1_minus_p(iris, monkeypatch):
    # Every training step's masks are 0 or 1 / (1 - p), a unit kept with
    # probability 1 - p, so the masked activations keep their expectation.
    from sknn_large._engine import _loop

    seen = []
    real = _loop._Trainer._masks

    def recording(self, k, bsz, counts):
        masks = real(self, k, bsz, counts)
        seen.extend(m.clone() for m in masks)
        return masks

    monkeypatch.setattr(_loop._Trainer, "_masks", recording)
    X, y = iris
    LargeMLPClassifier((64,), dropout=0.3, max_iter=20, random_state=0).fit(X, y)
    values = torch.cat([m.reshape(-1) for m in seen])
    assert len(seen) == 20 and values.numel() == 20 * 150 * 64
    kept = values > 0
    assert torch.allclose(values[kept], torch.tensor(1 / 0.7))
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 10 standard errors
    assert abs(values.mean().item() - 1.0) < 0.015


@pytest.mark.parametrize("p", [0.1, 1 / 3, 0.5, 0.99])
def test_dropout_bits_keep_each_unit_with_probability_1_minus_p(p):
    # 32 random bits a unit (two to a 64-bit word): each unit kept with
    # probability 1 - p, and the two units of a word independently.
    from sknn_large._engine._dropout import keep_units_

    gen = torch.Generator().manual_seed(1)
    out = keep_units_(torch.empty(2000, 2000), p, gen)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    q, n = 1 - p, out.numel()
    assert abs(out.mean().item() - q) < 5 * math.sqrt(p * q / n)
    pairs = out.view(-1, 2)
    both = (pairs[:, 0] * pairs[:, 1]).mean().item()
    assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / pairs.shape[0])


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 2.0**-32, 1 - 2.0**-33])
def test_dropout_bits_cut_exactly_at_p(p):
    # U = c / 2**32 is kept exactly when U >= p: c = ceil(p * 2**32) is the
    # first kept value, the one below it dropped, and nothing ever reaches a
    # p within 2**-32 of 1.
    from sknn_large._engine._dropout import keep_from_bits_

    cut = math.ceil(p * 2.0**32)
    values = [c for c in (cut - 1, cut) if 0 <= c < 2**32]
    bits = torch.tensor([c - 2**31 for c in values], dtype=torch.int32)
    out = keep_from_bits_(torch.empty(len(values)), bits, p)
    assert out.tolist() == [float(c / 2**32 >= p) for c in values]
    assert out.tolist()[-1] == (1.0 if cut < 2**32 else 0.0)


def test_dropout_rejected_with_lbfgs(iris):
    # L-BFGS needs a deterministic objective; the error says what to use instead.
    X, y = iris
    with pytest.raises(ValueError, match="dropout > 0 is not supported"):
        LargeMLPClassifier(solver="lbfgs", dropout=0.1).fit(X, y)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_every_solver_learns(solver, iris):
    # Each optimizer trains a small network to a good accuracy on iris.
    X, y = iris
    lr = 0.05 if solver in ("sgd", "rmsprop") else 0.01
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(16,),
        solver=solver,
        learning_rate_init=lr,
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("activation", sorted(_ACTIVATIONS))
@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_every_activation_trains(activation, Est, iris):
    # Every hidden activation builds, trains and improves the loss.
    X, y = iris
    est = Est(
        hidden_layer_sizes=(8,),
        activation=activation,
        max_iter=30,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X, y)
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    assert isinstance(est.module_[1], type(_ACTIVATIONS[activation]()))


def test_sgd_nesterov_and_momentum_differ(iris):
    # momentum and nesterovs_momentum reach the optimizer (results differ).
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=10, random_state=0)
    runs = [
        LargeMLPClassifier(momentum=m, nesterovs_momentum=n, **kw).fit(X, y).coefs_[0]
        for m, n in [(0.0, False), (0.9, False), (0.9, True)]
    ]
    assert not np.allclose(runs[0], runs[1])
    assert not np.allclose(runs[1], runs[2])


def test_reproducible_bit_for_bit(iris):
    # The same int random_state gives identical weights, dropout included.
    X, y = iris
    kw = dict(hidden_layer_sizes=(16,), dropout=0.2, max_iter=15, random_state=7)
    a = LargeMLPClassifier(**kw).fit(X, y)
    b = LargeMLPClassifier(**kw).fit(X, y)
    for wa, wb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.loss_curve_ == b.loss_curve_


def test_global_rng_untouched(iris):
    # fit neither reads nor advances the caller's global torch / numpy RNG.
    X, y = iris
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 - the global state is what we check
    torch_before, np_before = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    LargeMLPClassifier(hidden_layer_sizes=(8,), dropout=0.3, max_iter=3).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert np.array_equal(np.random.get_state()[1], np_before[1])  # noqa: NPY002


def test_partial_fit_equals_fit(iris):
    # N partial_fit calls reproduce fit(max_iter=N) exactly, dropout included.
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), dropout=0.2, batch_size=32, random_state=0)
    full = LargeMLPClassifier(max_iter=6, **kw).fit(X, y)
    inc = LargeMLPClassifier(**kw)
    for _ in range(6):
        inc.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_array_equal(full.coefs_[0], inc.coefs_[0])


@pytest.mark.parametrize(
    "classes, batch",
    [
        ([0, 1], [1, 0, 1, 1]),
        ([3, 7, 9], [9, 3, 9]),  # only two of three classes in the batch
        (["b", "a", "c"], ["c", "c", "a", "b"]),
        (np.array(["x", "y"], dtype=object), np.array(["y", "y"], dtype=object)),
        ([5], [5, 5]),
    ],
)
def test_later_calls_encode_labels_as_the_binarizer_does(classes, batch):
    # After the first partial_fit (or with warm_start), labels are encoded from
    # one np.unique against classes_: the label binarizer's matrix exactly.
    batch = np.asarray(batch)
    X = np.zeros((len(batch), 2))
    clf = LargeMLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    first = np.asarray(classes)[np.arange(4) % len(classes)]
    clf.partial_fit(np.zeros((4, 2)), first, classes=classes)
    _, Y = clf._validate_input(X, batch, incremental=True, reset=False)
    want = clf._label_binarizer.transform(batch).astype(bool)
    assert Y.dtype == bool
    np.testing.assert_array_equal(Y, want)
    clf.partial_fit(X, batch)  # and trains


def test_class_weight_balanced_raises_minority_recall(rng):
    # 'balanced' weights help the minority class, as in sklearn's linear models.
    X = rng.randn(400, 2)
    y = (X[:, 0] + 0.5 * rng.randn(400) > 1.3).astype(int)
    kw = dict(hidden_layer_sizes=(8,), max_iter=100, random_state=0)
    plain = LargeMLPClassifier(**kw).fit(X, y)
    balanced = LargeMLPClassifier(class_weight="balanced", **kw).fit(X, y)
    recall = lambda est: np.mean(est.predict(X)[y == 1] == 1)
    assert recall(balanced) > recall(plain)


def test_class_weight_dict_equals_sample_weight(iris):
    # A class_weight dict is the same as the matching per-sample weights.
    X, y = iris
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    a = LargeMLPClassifier(class_weight=weights, **kw).fit(X, y)
    b = LargeMLPClassifier(**kw).fit(X, y, sample_weight=np.vectorize(weights.get)(y))
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-6)


def test_class_weight_unknown_class(iris):
    # A class_weight naming a class absent from y is an error, not silently ignored.
    X, y = iris
    with pytest.raises(ValueError, match="not in the data"):
        LargeMLPClassifier(class_weight={5: 2.0}, max_iter=2).fit(X, y)


def test_early_stopping_keeps_best_weights(iris):
    # Early stopping scores held-out data each epoch and restores the best epoch.
    X, y = iris
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(16,),
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        max_iter=300,
        random_state=0,
    ).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None


def test_verbose_prints_iterations(iris, capsys):
    # verbose prints sklearn's per-iteration lines with the loss.
    X, y = iris
    LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("Iteration") == 3 and "loss = " in out


def test_quiet_by_default(iris, capsys):
    # verbose=False prints nothing.
    X, y = iris
    LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3).fit(X, y)
    assert capsys.readouterr().out == ""


def test_keyboard_interrupt_keeps_usable_model(iris, monkeypatch):
    # Ctrl-C during fit warns, keeps the last completed epoch and leaves a fitted model.
    from sknn_large._engine import _loop as _train

    X, y = iris
    calls = {"n": 0}
    real = _train._run_epoch

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", interrupted)
    clf = LargeMLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert np.all(np.isfinite(clf.coefs_[0]))
    assert clf.predict(X).shape == y.shape


def test_nonfinite_loss_raises_and_keeps_finite_weights(rng):
    # A diverging run stops, restores the last finite weights and names the causes.
    X = rng.randn(50, 3) * 1e30
    y = rng.randn(50)
    reg = LargeMLPRegressor(hidden_layer_sizes=(4,), max_iter=20, random_state=0)
    with pytest.raises(ValueError, match="learning rate"):
        reg.fit(X, y)
    assert all(np.isfinite(w).all() for w in reg.coefs_)


def test_nonfinite_loss_with_early_stopping_warns(iris):
    # With early stopping a diverged run keeps its best finite weights and warns.
    X, y = iris
    reg = LargeMLPRegressor(
        activation="identity",
        solver="sgd",
        learning_rate_init=1.0,
        early_stopping=True,
        max_iter=50,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="non-finite"):
            reg.fit(X * 100, y)


def test_warm_start_continues(iris):
    # warm_start reuses the weights: a second fit starts from the first's loss.
    X, y = iris
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(8,), warm_start=True, max_iter=5, random_state=0
    )
    clf.fit(X, y)
    first = clf.loss_curve_[-1]
    clf.fit(X, y)
    assert len(clf.loss_curve_) == 10
    assert clf.loss_curve_[5] < first * 1.05


@pytest.mark.parametrize("precision", ["float32", "float64", "bfloat16"])
def test_precision_options(precision, iris):
    # Each precision trains; float64 trains float64 weights, others float32.
    X, y = iris
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(16,),
        precision=precision,
        learning_rate_init=0.01,
        max_iter=100,
        random_state=0,
    ).fit(X, y)
    want = torch.float64 if precision == "float64" else torch.float32
    assert next(clf.module_.parameters()).dtype == want
    assert clf.coefs_[0].dtype == np.float64  # follows the input, as in sklearn
    assert clf.score(X, y) > 0.85


def test_auto_precision_agrees_with_float64(iris):
    # The float32 default ends close to a float64 run from the same start.
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    a = LargeMLPClassifier(**kw).fit(X, y)
    b = LargeMLPClassifier(precision="float64", **kw).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-4)


def test_poisson_regression_predicts_positive(rng):
    # The Poisson loss uses an exp link: predictions are positive rates.
    X = rng.rand(200, 2)
    y = rng.poisson(np.exp(1 + X[:, 0]))
    reg = LargeMLPRegressor(loss="poisson", hidden_layer_sizes=(8,), random_state=0)
    reg.fit(X, y)
    assert reg.out_activation_ == "exp"
    assert np.all(reg.predict(X) > 0)
    with pytest.raises(ValueError, match="negative"):
        reg.fit(X, -y - 1)


def test_verbose_progress_bar_in_terminal(iris, capsys, monkeypatch):
    # verbose=1 in a terminal draws one live bar with epochs, loss and ETA.
    from sknn_large import _progress

    monkeypatch.setattr(_progress, "interactive", lambda: True)
    X, y = iris
    LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=4, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration" not in out
    assert out.count("\r[") == 4 and "epoch 4/4" in out and "ETA" in out


def test_verbose_2_prints_lines_even_in_terminal(iris, capsys, monkeypatch):
    # verbose>=2 keeps sklearn's lines, terminal or not.
    from sknn_large import _progress

    monkeypatch.setattr(_progress, "interactive", lambda: True)
    X, y = iris
    LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=2).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("Iteration") == 3 and "\r[" not in out


def test_diagnostics_go_to_logging(iris, caplog):
    # Where and how training ran is logged at DEBUG level on the sknn_large logger.
    X, y = iris
    with caplog.at_level("DEBUG", logger="sknn_large"):
        LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=2, device="cpu").fit(X, y)
    assert any("ResidentFeed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("solver", ["adam", "sgd", "rmsprop"])
def test_l2_as_coupled_decay_equals_loss_term(solver, iris):
    # The fast path (L2 applied inside the optimizer step) trains and reports
    # exactly what differentiating the L2 loss term does (the sample-weighted
    # path, with unit weights).
    X, y = iris
    kw = dict(
        hidden_layer_sizes=(8,),
        solver=solver,
        alpha=0.3,
        batch_size=32,  # 150 rows: the last batch is smaller
        max_iter=5,
        precision="float64",
        random_state=0,
    )
    fast = LargeMLPClassifier(**kw).fit(X, y)
    term = LargeMLPClassifier(**kw).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_allclose(fast.coefs_[0], term.coefs_[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.loss_curve_, term.loss_curve_, rtol=1e-10)


def test_small_device_budget_streams_and_matches_resident(iris, monkeypatch, caplog):
    # Data over the device budget is streamed in chunks; with shuffle=False the
    # streamed fit equals the resident one exactly.
    from sknn_large._data import _sources as _data

    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), batch_size=16, shuffle=False, max_iter=3)
    resident = LargeMLPClassifier(random_state=0, **kw).fit(X, y)
    monkeypatch.setattr(_data, "free_device_bytes", lambda device: 1024.0)
    with caplog.at_level("DEBUG", logger="sknn_large"):
        streamed = LargeMLPClassifier(random_state=0, **kw).fit(X, y)
    assert any("StreamFeed" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(resident.coefs_[0], streamed.coefs_[0])
