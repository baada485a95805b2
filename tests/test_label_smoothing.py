"""label_smoothing: torch's semantics in every path of the one engine."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs, make_multilabel_classification
from sklearn.neural_network import MLPClassifier

from sknn_large import LargeMLPClassifier
from sknn_large._engine import _LOSSES
from sknn_large._estimator import _stacked
from sknn_large._persist import from_bytes, to_bytes
from sknn_large.ensemble import LargeMLPEnsembleClassifier

EPS = 0.2


def _eps(value, shape=(1, 1)):
    return torch.full(shape, value, dtype=torch.float64)


def _binary_reference(raw: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    # Plain NumPy: the cross-entropy against y * (1 - eps) + eps / 2 per output.
    t = y * (1 - eps) + eps / 2
    p = 1 / (1 + np.exp(-raw))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1)


@pytest.mark.parametrize("eps", [0.05, EPS, 0.9])
def test_softmax_loss_is_torch_cross_entropy_with_label_smoothing(eps):
    # Both the autograd loss and the hand-derived value give torch's
    # cross_entropy(label_smoothing=eps), per sample.
    g = torch.Generator().manual_seed(0)
    raw = 3 * torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=g)
    want = F.cross_entropy(raw, y, label_smoothing=eps, reduction="none")
    loss = _LOSSES["log_loss"]
    torch.testing.assert_close(loss.values(raw, y, _eps(eps)), want)
    value, _ = loss.values_and_delta(raw.clone(), y, _eps(eps))
    torch.testing.assert_close(value, want)


@pytest.mark.parametrize("n_out", [1, 3])
def test_logistic_loss_smooths_each_output(n_out):
    # Binary (one output) and multilabel (several): a NumPy computation of
    # the smoothed targets' cross-entropy; the binary one also equals torch's
    # two-class softmax cross-entropy with the same label smoothing.
    rng = np.random.RandomState(0)
    raw = 3 * rng.randn(30, n_out)
    y = (rng.rand(30, n_out) > 0.5).astype(float)
    want = _binary_reference(raw, y, EPS)
    loss = _LOSSES["binary_log_loss"]
    r, t = torch.from_numpy(raw), torch.from_numpy(y)
    np.testing.assert_allclose(loss.values(r, t, _eps(EPS)).numpy(), want, rtol=1e-12)
    value, _ = loss.values_and_delta(r.clone(), t, _eps(EPS))
    np.testing.assert_allclose(value.numpy(), want, rtol=1e-12)
    if n_out == 1:
        two = torch.cat([torch.zeros_like(r), r], dim=1)
        ce = F.cross_entropy(two, t[:, 0].long(), label_smoothing=EPS, reduction="none")
        np.testing.assert_allclose(ce.numpy(), want, rtol=1e-10)


@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
def test_hand_delta_is_the_gradient_of_the_smoothed_loss(name):
    # delta = prediction - smoothed target is d loss / d raw: against autograd
    # through torch's own functions, and against central finite differences.
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(12, 3, generator=g, dtype=torch.float64)
    loss = _LOSSES[name]
    if name == "log_loss":
        y = torch.randint(0, 3, (12,), generator=g)

        def reference(r):
            return F.cross_entropy(r, y, label_smoothing=EPS, reduction="sum")

    else:
        y = (torch.rand(12, 3, generator=g) > 0.5).double()

        def reference(r):
            t = y * (1 - EPS) + EPS / 2
            return F.binary_cross_entropy_with_logits(r, t, reduction="sum")

    _, delta = loss.values_and_delta(raw.clone(), y, _eps(EPS))
    leaf = raw.clone().requires_grad_()
    (grad,) = torch.autograd.grad(reference(leaf), leaf)
    torch.testing.assert_close(delta, grad, rtol=1e-12, atol=1e-12)
    h, fd = 1e-6, torch.zeros_like(raw)
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            up, down = raw.clone(), raw.clone()
            up[i, j] += h
            down[i, j] -= h
            diff = loss.values(up, y, _eps(EPS)) - loss.values(down, y, _eps(EPS))
            fd[i, j] = diff.sum() / (2 * h)
    torch.testing.assert_close(delta, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["log_loss", "binary_log_loss"])
def test_hand_step_equals_autograd_step_with_per_member_smoothing(name):
    # A stack of three members with eps 0, 0.1, 0.3: the hand-derived step
    # and the autograd step agree on values and gradients.
    from sknn_large._engine._stack import ParamStack

    widths, k = [4, 6, 3], 3
    g = torch.Generator().manual_seed(3)
    n = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    theta = 0.5 * torch.randn(k, n + sum(widths[1:]), generator=g, dtype=torch.float64)
    x = torch.randn(k, 10, 4, generator=g, dtype=torch.float64)
    if name == "log_loss":
        y = torch.randint(0, 3, (k, 10), generator=g)
    else:
        y = (torch.rand(k, 10, 3, generator=g) > 0.5).double()
    eps = torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64).view(-1, 1, 1)
    hand, auto = ParamStack(widths, theta.clone()), ParamStack(widths, theta.clone())
    loss = _LOSSES[name]
    v1 = hand.hand_step(x, y, 0.1, "tanh", loss, None, eps)
    v2 = auto.autograd_step(x, y, 0.1, "tanh", loss, None, None, eps)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hand.grad, auto.grad, rtol=1e-10, atol=1e-12)


def _targets(kind):
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    if kind == "multiclass":
        return X, y
    if kind == "binary":
        return X, (y == 1).astype(int)
    Xm, Ym = make_multilabel_classification(n_samples=90, n_classes=3, random_state=0)
    return (Xm - Xm.mean(0)) / Xm.std(0), Ym


def _log_proba_as_raw(clf, X):
    # Raw outputs up to what the losses ignore: log-probabilities (softmax)
    # or logits (logistic outputs).
    p = clf.predict_proba(X)
    if clf.out_activation_ == "softmax":
        return np.log(p)
    if p.shape[1] == 2 and clf.n_outputs_ == 1:
        p = p[:, 1:]
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_reported_loss_is_the_smoothed_loss(kind, solver):
    # loss_curve_ reports the smoothed loss of the network (like torch): one
    # full-batch step of negligible size leaves the weights where they were,
    # so the first loss is that of the final network, computed independently.
    X, y = _targets(kind)
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(5,),
        solver=solver,
        learning_rate_init=1e-12,
        momentum=0.0,
        max_iter=1 if solver == "sgd" else 5,
        alpha=0.0,
        batch_size=X.shape[0],
        label_smoothing=EPS,
        precision="float64",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    raw = torch.from_numpy(_log_proba_as_raw(clf, X))
    if kind == "multiclass":
        want = F.cross_entropy(raw, torch.from_numpy(y), label_smoothing=EPS).item()
    else:
        want = _binary_reference(raw.numpy(), y.reshape(len(y), -1), EPS).mean()
    if solver == "sgd":
        assert clf.loss_curve_[0] == pytest.approx(want, rel=1e-9)
    else:
        # L-BFGS reports the loss at its accepted point: the fitted network.
        assert clf.loss_ == pytest.approx(want, rel=1e-9)


def test_smoothing_gives_less_confident_probabilities():
    # On separable data the unsmoothed network grows confident (its largest
    # probability near 1); smoothing pulls it toward the smoothed target's
    # 1 - eps + eps / C (0.9 for two classes, 0.867 for three) and still
    # classifies every row right.
    kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.02, max_iter=300)
    for centers, ceiling in (
        ([[-3, -3], [3, 3]], 1 - EPS + EPS / 2),
        ([[-4, 0], [4, 0], [0, 6]], 1 - EPS + EPS / 3),
    ):
        X, y = make_blobs(
            n_samples=150, centers=centers, cluster_std=0.5, random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = LargeMLPClassifier(**kw, random_state=0).fit(X, y)
            smooth = LargeMLPClassifier(**kw, label_smoothing=EPS, random_state=0)
            smooth.fit(X, y)
        top_plain = plain.predict_proba(X).max(axis=1)
        top_smooth = smooth.predict_proba(X).max(axis=1)
        assert top_plain.mean() > 0.99
        assert top_smooth.mean() < ceiling + 0.04
        assert top_plain.mean() > top_smooth.mean() + 0.05
        assert smooth.score(X, y) == 1.0


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_zero_smoothing_keeps_sklearns_numbers(kind):
    # label_smoothing=0 (the default) trains exactly as before: it takes the
    # unsmoothed code path and matches scikit-learn's MLPClassifier in
    # float64 to rounding, curve and weights.
    X, y = _targets(kind)
    kw = dict(
        hidden_layer_sizes=(5,),
        solver="sgd",
        learning_rate_init=0.01,
        max_iter=5,
        shuffle=False,
        batch_size=50,
        random_state=0,
    )
    mine = dict(kw, precision="float64", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = LargeMLPClassifier(**mine, label_smoothing=0.0).fit(X, y)
        default = LargeMLPClassifier(**mine).fit(X, y)
        theirs = MLPClassifier(**kw).fit(X, y)
    assert ours.loss_curve_ == default.loss_curve_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_stacked_members_with_smoothing_train_as_alone(kind):
    # Members with different label smoothing (0 included) share one stack,
    # and each ends where the same estimator fitted alone ends.
    X, y = _targets(kind)
    base = LargeMLPClassifier(
        hidden_layer_sizes=(6,),
        solver="sgd",
        max_iter=4,
        batch_size=32,
        precision="float64",
        random_state=0,
    )
    ests = [clone(base).set_params(label_smoothing=e) for e in (0.0, 0.1, 0.3)]
    rows = [np.arange(150), np.arange(120), np.arange(30, 150)]
    stacks = []
    real = _stacked.fit_members

    def recording(members, feed):
        stacks.append(len(members))
        return real(members, feed)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(_stacked, "fit_members", recording)
        stacked = _stacked.fit_many([clone(e) for e in ests], X, y, rows)
        alone = [clone(e).fit(X[r], y[r]) for e, r in zip(ests, rows, strict=True)]
    assert stacks == [3]
    for a, b in zip(stacked, alone, strict=True):
        assert a.loss_curve_ == pytest.approx(b.loss_curve_, rel=1e-9)
        for u, v in zip(
            a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True
        ):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
    assert stacked[0].loss_curve_[-1] < stacked[2].loss_curve_[-1]


def test_partial_fit_with_smoothing_equals_fit():
    # N calls of partial_fit equal fit(max_iter=N) with smoothing as without.
    X, y = _targets("multiclass")
    kw = dict(hidden_layer_sizes=(5,), label_smoothing=0.1, random_state=0)
    kw.update(precision="float64", shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = LargeMLPClassifier(max_iter=3, **kw).fit(X, y)
    part = LargeMLPClassifier(**kw)
    for _ in range(3):
        part.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_allclose(part.coefs_[0], fitted.coefs_[0], rtol=1e-10)


def test_ensemble_forwards_label_smoothing():
    # The ensemble takes the parameter and hands it to every member.
    X, y = _targets("multiclass")
    ens = LargeMLPEnsembleClassifier(
        n_estimators=2,
        hidden_layer_sizes=(4,),
        max_iter=3,
        label_smoothing=0.1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(X, y)
    assert ens.get_params()["label_smoothing"] == 0.1
    assert [m.label_smoothing for m in ens.estimators_] == [0.1, 0.1]


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_label_smoothing_outside_zero_one_is_refused(bad):
    # label_smoothing lives in [0, 1): 1 would make every target uniform.
    X, y = _targets("binary")
    with pytest.raises(ValueError, match="label_smoothing"):
        LargeMLPClassifier(label_smoothing=bad).fit(X, y)
    with pytest.raises(ValueError, match="label_smoothing"):
        LargeMLPEnsembleClassifier(label_smoothing=bad).fit(X, y)


def test_smoothed_model_saves_and_loads(tmp_path):
    # The parameter survives a model file and pickling; prediction (and so
    # ONNX export, which reads the weights) does not depend on it. A file
    # written before the parameter existed loads with its default.
    import pickle

    X, y = _targets("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
        clf.set_params(label_smoothing=0.15).fit(X, y)
    loaded = from_bytes(to_bytes(clf))
    assert loaded.label_smoothing == 0.15
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    again = pickle.loads(pickle.dumps(clf))
    assert again.get_params() == clf.get_params()

    params = clf.get_params
    with pytest.MonkeyPatch.context() as mp:
        # An older file: no label_smoothing parameter, no validation curve.
        mp.setattr(
            clf,
            "get_params",
            lambda deep=True: {
                k: v for k, v in params(deep).items() if k != "label_smoothing"
            },
        )
        del clf.validation_loss_curve_
        data = to_bytes(clf)
    old = from_bytes(data)
    assert old.label_smoothing == 0.0 and old.validation_loss_curve_ is None
    np.testing.assert_array_equal(old.predict_proba(X), clf.predict_proba(X))
