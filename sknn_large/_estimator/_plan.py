"""The estimator's half of the one interface to the engine.

Parameters go down as engine :class:`~sknn_large._engine.Member` records (a
:class:`~sknn_large._engine.TrainConfig`, the network, the state, the rows,
the held-out data and the hooks) and results come back in those records; this
module translates both ways, once, for a plain ``fit`` (``K = 1``) and for
every member of a stacked fit (``K > 1``) alike.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from .. import _progress
from .._data import (
    EpochOrder,
    ResidentFeed,
    SharedFeed,
    as_source,
    as_tensor,
    iter_row_blocks,
    make_feed,
    rows_to_tensor,
)
from .._engine import (
    _LOSSES,
    _PRECISIONS,
    STOCHASTIC,
    Member,
    TrainConfig,
    TrainState,
    Validation,
    build_mlp,
    get_coefs,
    init_glorot_,
)
from .._engine._cpu import has_native_bf16
from .._engine._steps import bf16_step_slowdown
from .._parallel import worker_device
from ._inputs import hidden_sizes

_log = logging.getLogger("sknn_large")
_DIVERGED = (
    "Solver produced non-finite parameter weights. The input data may contain large"
    " values and need to be preprocessed. Training stopped at iteration {it} when the"
    " loss became non-finite; the weights of the last finite iteration were kept."
    " Likely causes: a learning rate that is too high (learning_rate_init={lr}) or"
    " unscaled inputs (try StandardScaler)."
)


# ------------------------------------------------------------ the network


def param_dtypes(est, X) -> tuple[torch.dtype, torch.dtype | None]:
    """(parameter dtype, autocast dtype) for training.

    'auto' trains stochastic solvers in float32: mini-batch noise dwarfs
    float32 rounding and float32 is several times faster. L-BFGS keeps the
    input's dtype (float64 or float32, as scikit-learn does) because its line
    search and gradient-tolerance stop need precise gradients.
    """
    param_dtype, autocast = _PRECISIONS[est.precision]
    if param_dtype is None:
        stochastic = est.solver in STOCHASTIC
        param_dtype = (
            torch.float32 if X.dtype == np.float32 or stochastic else torch.float64
        )
    return param_dtype, autocast


_warned_bf16: set[str] = set()
# A bfloat16 step must take under this share of a float32 one to pass
# silently: a step ratio within timing noise of 1 (a few per cent, run to
# run) can hide a slower fit, and target 5 of issue 12 is "never silently
# slower".
_BF16_PAYS_BELOW = 0.95


def warn_if_bf16_is_slow(
    device: torch.device, autocast, widths: tuple[int, ...], batch_size: int
) -> None:
    """Warn once per process when bfloat16 would not speed a CPU fit up.

    A training step of this very network in each precision, timed once, says
    whether bfloat16 pays here (by at least 5 %, beyond timing noise): CPUs
    without bfloat16 instructions (avx512_bf16, amx_bf16) emulate it, and
    even with them the casts can cost more than the faster products save.
    """
    if autocast != torch.bfloat16 or device.type != "cpu" or _warned_bf16:
        return
    slowdown = bf16_step_slowdown(widths, batch_size)
    if slowdown <= _BF16_PAYS_BELOW:
        return
    _warned_bf16.add("cpu")
    why = (
        "this CPU has no native bfloat16 instructions (avx512_bf16, amx_bf16)"
        if not has_native_bf16()
        else "this CPU has bfloat16 instructions, but the casts to and from "
        "bfloat16 cost as much as its faster products save at this network's "
        "size, or more"
    )
    warnings.warn(
        f"precision='bfloat16' trains no faster than float32 here: {why}; a "
        f"bfloat16 training step of this network measured {slowdown:.3g}x the "
        "time of a float32 one. Use precision='float32' (what 'auto' picks); "
        "bfloat16 pays on GPUs and, for wide layers, on CPUs with those "
        "instructions.",
        RuntimeWarning,
        stacklevel=4,
    )


def new_network(est, X, Y, rng: np.random.RandomState) -> None:
    """Choose device and dtypes, then build and initialise a fresh network."""
    est.device_ = worker_device(est.device)
    est._param_dtype = param_dtypes(est, X)
    # Fitted arrays and predictions follow the input's dtype, as in sklearn.
    est._output_dtype = X.dtype
    est.n_outputs_ = Y.shape[1]
    est.out_activation_ = _LOSSES[est._loss_name()].out_activation
    sizes = hidden_sizes(est.hidden_layer_sizes)
    if est.solver in STOCHASTIC:
        widths = (X.shape[1], *sizes, est.n_outputs_)
        batch = resolve_batch_size(est, X.shape[0], warn=False)
        warn_if_bf16_is_slow(est.device_, est._param_dtype[1], widths, batch)
    # Allocated in the final dtype so float64 draws are not rounded to float32.
    module = build_mlp(
        X.shape[1],
        sizes,
        est.n_outputs_,
        activation=est.activation,
        dropout=est.dropout,
        device=est.device_,
        dtype=est._param_dtype[0],
    )
    init_glorot_(module, est.activation, rng)
    # Torch's streams (dropout; the shuffling of streamed and stacked fits)
    # are seeded from the random state without drawing from it, so that the
    # split and the epoch order draw what scikit-learn's MLP draws.
    seed, dropout_seed = (
        int(s) for s in np.random.SeedSequence(rng.get_state()[1]).generate_state(2)
    )
    est.module_ = module
    est.n_layers_ = len(sizes) + 2
    est._state = state = TrainState(
        generator=torch.Generator().manual_seed(seed), dropout_seed=dropout_seed
    )
    if est.solver in STOCHASTIC:
        state.best_loss = None if est.early_stopping else np.inf
        if est.early_stopping:
            state.validation_scores = []
            state.validation_loss_curve = []
            state.best_validation_score = -np.inf


def continue_network(est) -> None:
    """Move a loaded (CPU) model to its training device before training more."""
    est.device_ = worker_device(est.device)
    est.module_.to(est.device_)


def resolve_batch_size(est, n_samples: int, warn: bool = True) -> int:
    """scikit-learn's ``batch_size`` rule: 'auto' is min(200, n), then clipped.

    ``warn`` gives scikit-learn's warning when ``batch_size`` is clipped.
    """
    if est.batch_size == "auto":
        return min(200, n_samples)
    if warn and est.batch_size > n_samples:
        warnings.warn(
            "Got `batch_size` less than 1 or larger than sample size. It is"
            " going to be clipped",
            stacklevel=3,
        )
    return int(np.clip(est.batch_size, 1, n_samples))


def train_config(
    est, batch_size: int, incremental: bool, resume: bool = False, verbose=None
) -> TrainConfig:
    """The engine settings of this estimator for one training call."""
    return TrainConfig(
        solver=est.solver,
        loss=est._loss_name(),
        activation=est.activation,
        dropout=float(est.dropout),
        label_smoothing=float(est._label_smoothing()),
        learning_rate_init=est.learning_rate_init,
        learning_rate=est.learning_rate,
        power_t=est.power_t,
        momentum=est.momentum,
        nesterovs_momentum=est.nesterovs_momentum,
        beta_1=est.beta_1,
        beta_2=est.beta_2,
        epsilon=est.epsilon,
        alpha=est.alpha,
        penalty=est.penalty,
        l1_ratio=est.l1_ratio,
        batch_size=batch_size,
        max_iter=est.max_iter,
        shuffle=est.shuffle,
        tol=est.tol,
        n_iter_no_change=est.n_iter_no_change,
        early_stopping=est.early_stopping and not incremental,
        max_fun=est.max_fun,
        verbose=int(est.verbose) if verbose is None else verbose,
        incremental=incremental,
        resume=resume,
        autocast_dtype=est._param_dtype[1],
        cuda_graphs=est.cuda_graphs,
    )


# ------------------------------------------------------------ data


def split_rows(est, Y, rng) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the training and held-out parts (early stopping).

    Stratified for single-output classification, as scikit-learn's MLP does;
    the same ``rng`` gives the same split whatever holds the rows.
    """
    stratify = Y if is_classifier(est) and est.n_outputs_ == 1 else None
    if stratify is not None and stratify.ndim == 2:
        # The strings train_test_split makes of an (n, 1) column's rows, made
        # at once instead of row by row (same split, same error messages).
        stratify = stratify[:, 0].astype(str)
    rows = np.arange(Y.shape[0])
    train, val = train_test_split(
        rows, random_state=rng, test_size=est.validation_fraction, stratify=stratify
    )
    if val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    return train, val


def engine_targets(est, Y: np.ndarray) -> np.ndarray:
    """Targets as the loss wants them: class indices or floats."""
    if _LOSSES[est._loss_name()].index_targets:
        return Y.argmax(axis=1)
    return Y


def _target_dtype(est) -> torch.dtype:
    if _LOSSES[est._loss_name()].index_targets:
        return torch.int64
    return est._param_dtype[0]


def _scorer(est, Y_val, sw_val):
    def score(raw: np.ndarray) -> float:
        return est._score_fitted(raw, Y_val, sw_val)

    return score


def holdout_split(est, X, Y, sw, rng):
    """``(X, Y, sw)`` of the training part, then of the held-out part.

    The ``X`` parts are :class:`~sknn_large._data.Source` s: data read from
    where it lives (a memory-mapped file, a lazy array-like) is split into
    sorted views instead of copied, so memory stays bounded, and holds out
    the rows an in-memory split of the same data holds out.
    """
    source = as_source(X)
    train, val = split_rows(est, Y, rng)
    if source.streams:
        train, val = np.sort(train), np.sort(val)
    parts = []
    for index in (train, val):
        sw_part = None if sw is None else sw[index]
        parts += [source.take(index), Y[index], sw_part]
    return tuple(parts)


def _held_out_targets(est, Y_val, sw_val) -> dict:
    """The held-out targets and weights on the device, for the loss on them."""
    device, dtype = est.device_, est._param_dtype[0]
    targets = as_tensor(engine_targets(est, Y_val), device, _target_dtype(est))
    return {"targets": targets, "sample_weight": as_tensor(sw_val, device, dtype)}


def _validation(est, X_val, Y_val, sw_val) -> Validation:
    """In memory, held-out rows move to the device once; else they stream.

    ``X_val`` is a :class:`~sknn_large._data.Source`: an early-stopping part
    of the training data or the caller's validation set.
    """
    device, dtype = est.device_, est._param_dtype[0]
    X = X_val.X
    if X_val.streams:
        rows = X_val.stream_rows()

        def blocks():
            return iter_row_blocks(X, rows, device, dtype)

    else:
        x = rows_to_tensor(X, 0, X.shape[0], device, dtype)

        def blocks():
            return iter([x])

    return Validation(
        _scorer(est, Y_val, sw_val),
        blocks=blocks,
        **_held_out_targets(est, Y_val, sw_val),
    )


def _epoch_order(est, rng, n: int, resume) -> EpochOrder:
    """scikit-learn's epoch order, from ``rng`` after the weights and the split.

    A resumed fit replays the draws of the epochs it already trained.
    """
    return EpochOrder(rng, n, est._state.n_iter if resume is not None else 0)


def _early_stops(est, incremental: bool) -> bool:
    return est.early_stopping and not incremental and est.solver in STOCHASTIC


def _forget_held_out(state: TrainState) -> None:
    # A fit without held-out rows reports no validation curves (None).
    state.validation_scores = state.validation_loss_curve = None
    state.best_validation_score = None


def single_member(
    est, X, Y, sw, rng, incremental, resume, hooks, verbose=None, held_out=None
):
    """The member and the feed of a plain ``fit`` / ``partial_fit``.

    ``held_out`` is the caller's validated ``(X_val, Y_val, sw_val)``: it
    replaces the early-stopping split, and is scored without early stopping.
    """
    validation, X = None, as_source(X)
    if held_out is not None:
        X_val, Y_val, sw_val = held_out
        validation = _validation(est, as_source(X_val), Y_val, sw_val)
    elif _early_stops(est, incremental):
        X, Y, sw, *split = holdout_split(est, X, Y, sw, rng)
        validation = _validation(est, *split)
    else:
        _forget_held_out(est._state)
    batch = resolve_batch_size(est, X.shape[0])
    cfg = train_config(est, batch, incremental, resume, verbose)
    feed = make_feed(
        X,
        engine_targets(est, Y),
        sw,
        batch_size=batch,
        device=est.device_,
        dtype=est._param_dtype[0],
        target_dtype=_target_dtype(est),
    )
    order = est._state.epoch_order if incremental else None
    if not isinstance(feed, ResidentFeed) or not cfg.shuffle:
        order = None
    elif order is None or order.n != feed.n_samples:
        order = _epoch_order(est, rng, feed.n_samples, resume)
    est._state.epoch_order = order
    _log.debug(
        "%s: %d samples on %s in %s via %s, batch_size=%d",
        type(est).__name__,
        feed.n_samples,
        est.device_,
        est._param_dtype[0],
        type(feed).__name__,
        batch,
    )
    begin, end = hooks
    member = Member(
        cfg,
        est._state,
        est.module_,
        validation=validation,
        on_epoch_begin=begin,
        on_epoch_end=end,
    )
    return member, SharedFeed(feed)


def stacked_member(
    est, rows: np.ndarray, Y, sw, rng, hooks, label: str, verbose=None, held_out=None
):
    """A member training on ``rows`` of a shared ``X`` (see ``_stacked``).

    ``Y`` and ``sw`` are the estimator's own (encoded) targets and weights of
    those rows; its early-stopping rows are held out of them exactly as its
    own ``fit`` would hold them out. ``held_out`` is its own validation set,
    as for :func:`single_member`.
    """
    validation = None
    train = np.arange(rows.shape[0])
    if held_out is not None:
        X_val, Y_val, sw_val = held_out
        validation = _validation(est, as_source(X_val), Y_val, sw_val)
    elif _early_stops(est, False):
        train, val = split_rows(est, Y, rng)
        sw_val = None if sw is None else sw[val]
        validation = Validation(
            _scorer(est, Y[val], sw_val),
            rows=torch.from_numpy(rows[val]),
            **_held_out_targets(est, Y[val], sw_val),
        )
    else:
        _forget_held_out(est._state)
    cfg = train_config(
        est, resolve_batch_size(est, train.shape[0]), False, verbose=verbose
    )
    est._state.epoch_order = (
        _epoch_order(est, rng, train.shape[0], None) if cfg.shuffle else None
    )
    begin, end = hooks
    return Member(
        cfg,
        est._state,
        est.module_,
        rows=torch.from_numpy(rows[train]),
        sample_weight=None if sw is None else torch.from_numpy(sw[train]),
        validation=validation,
        on_epoch_begin=begin,
        on_epoch_end=end,
        label=label,
    )


def stack_key(est, member: Member) -> tuple:
    """Estimators with equal keys can train in one stack."""
    classes = getattr(est, "classes_", None)
    classes = None if classes is None else repr(np.asarray(classes).tolist())
    widths = tuple(c.shape[1] for c in get_coefs(est.module_)[0])
    return (
        type(est).__name__,
        est.module_[0].in_features,
        widths,
        member.cfg.group_key(),
        est._param_dtype[0],
        str(est.device_),
        classes,
    )


# ------------------------------------------------------------ results


def publish(est, state: TrainState) -> None:
    """Expose the engine's results as scikit-learn's fitted attributes."""
    publish_weights(est)
    est.n_iter_ = state.n_iter
    est.t_ = state.t
    est.loss_ = state.loss
    est.loss_curve_ = state.loss_curve
    if est.solver in STOCHASTIC:
        est.best_loss_ = state.best_loss
        est.validation_scores_ = state.validation_scores
        est.validation_loss_curve_ = state.validation_loss_curve
        est.best_validation_score_ = state.best_validation_score
        est._no_improvement_count = state.no_improvement_count


def publish_weights(est) -> None:
    """``coefs_``/``intercepts_`` from ``module_``, in the input's dtype."""
    coefs, intercepts = get_coefs(est.module_)
    est.coefs_ = [c.astype(est._output_dtype, copy=False) for c in coefs]
    est.intercepts_ = [b.astype(est._output_dtype, copy=False) for b in intercepts]


def report(est, state: TrainState, cfg: TrainConfig, incremental: bool) -> None:
    """Warn or raise as scikit-learn's MLP does about how training ended."""
    _progress.end_line()  # a warning must not continue a progress bar's line
    if state.interrupted:
        warnings.warn("Training interrupted by user.", stacklevel=3)
    if state.diverged and not (cfg.early_stopping and state.best_params):
        raise ValueError(_DIVERGED.format(it=state.n_iter, lr=est.learning_rate_init))
    if state.diverged:
        warnings.warn(
            "The loss became non-finite at iteration %d; training stopped and the"
            " weights with the best validation score were kept. Lower"
            " learning_rate_init or scale the inputs." % state.n_iter,
            RuntimeWarning,
            stacklevel=3,
        )
        return
    if state.converged or incremental or state.interrupted:
        return
    if est.solver == "lbfgs":
        msg = (
            "lbfgs failed to converge after %d iteration(s) (%s). Increase the"
            " number of iterations (max_iter) or the number of function"
            " evaluations (max_fun), or scale the data."
            % (state.n_iter, "; ".join(state.messages))
        )
    else:
        msg = (
            "Stochastic Optimizer: Maximum iterations (%d) reached and the"
            " optimization hasn't converged yet." % est.max_iter
        )
    warnings.warn(msg, ConvergenceWarning, stacklevel=3)
