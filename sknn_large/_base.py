"""The scikit-learn layer shared by the classifier and the regressor."""

from __future__ import annotations

import copy
import gc
import logging
import os
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import assert_all_finite, check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    validate_data,
)

from . import _checkpoint, _progress
from ._data import (
    RowView,
    as_tensor,
    is_memory_mapped,
    is_row_source,
    iter_host_blocks,
    iter_row_blocks,
    make_feed,
    rows_for_bytes,
    stream_rows,
    streams_from_source,
)
from ._device import check_device_spec
from ._engine import (
    _ACTIVATIONS,
    _LOSSES,
    _PRECISIONS,
    _SOLVERS,
    TrainConfig,
    TrainState,
    build_mlp,
    get_coefs,
    init_glorot_,
    train,
    train_lbfgs,
)
from ._engine._network import _OUT_ACTIVATIONS
from ._engine._train import threads_for
from ._parallel import worker_device

try:  # scikit-learn >= 1.9: its callback API (set_callbacks, ProgressBar, ...)
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # older scikit-learn has none; estimators work without it

    class CallbackSupportMixin:  # noqa: D101 - empty stand-in
        pass


# Diagnostics (device, dtype, data path, resumption) go through logging;
# problems the user must act on go through warnings or exceptions.
_log = logging.getLogger("sknn_large")
_STOCHASTIC_SOLVERS = frozenset(_SOLVERS)
_PENALTIES = ("l1", "l2", "elasticnet")
# Rows per block when predicting: memory stays bounded whatever the input size.
# CPU blocks stay small enough for the activations to live in cache (measured
# 37% faster over 1M rows than 65536-row blocks); GPUs want big launches.
_PREDICT_ROWS = {"cpu": 8192}
_PREDICT_ROWS_ACCELERATOR = 65536
_DIVERGED = (
    "Solver produced non-finite parameter weights. The input data may contain large"
    " values and need to be preprocessed. Training stopped at iteration {it} when the"
    " loss became non-finite; the weights of the last finite iteration were kept."
    " Likely causes: a learning rate that is too high (learning_rate_init={lr}) or"
    " unscaled inputs (try StandardScaler)."
)


# Bytes of a memory-mapped X checked for NaN and infinity at a time.
_CHECK_BLOCK_BYTES = 64 * 2**20


def _validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
    """scikit-learn's ``validate_data``, keeping out-of-core ``X`` where it is.

    scikit-learn's finite check sums the whole array, which maps every page of
    a memory-mapped file into the process at once, and its conversion reads a
    lazy array-like (``h5py.Dataset``, ``zarr.Array``) whole into memory. For
    those ``X`` the finite check runs block by block instead, each block
    released after it, and a lazy array-like comes back as a
    :class:`~sknn_large._data.RowView` that the training and prediction feeds
    stream. The error messages are scikit-learn's.
    """
    mapped = is_memory_mapped(X)
    # scikit-learn would convert a mapped file of another dtype in one copy.
    lazy = is_row_source(X) or (mapped and X.dtype not in (np.float32, np.float64))
    if not (lazy or mapped):
        return validate_data(estimator, X, y, **kwargs)
    kwargs["ensure_all_finite"] = False
    source = X
    if lazy:
        # A read-only broadcast of the first row stands in for X: scikit-learn
        # checks the shape, the features and y against it without reading X.
        n, d = X.shape
        head = np.asarray(X[: min(n, 1)])
        if head.dtype not in (np.float32, np.float64):
            head = head.astype(np.float64)
        X = np.broadcast_to(head, (n, d)) if n else head
    out = validate_data(estimator, X, y, **kwargs)
    X_valid = out[0] if isinstance(out, tuple) else out
    if lazy:
        X_valid = RowView(source, dtype=X_valid.dtype)
        out = (X_valid, out[1]) if isinstance(out, tuple) else X_valid
    rows = rows_for_bytes(X_valid, _CHECK_BLOCK_BYTES)
    for block in iter_host_blocks(X_valid, rows):
        assert_all_finite(block, input_name="X")
    return out


def _hidden_sizes(hidden_layer_sizes) -> list[int]:
    if not hasattr(hidden_layer_sizes, "__iter__"):
        return [hidden_layer_sizes]
    return list(hidden_layer_sizes)


class BaseLargeMLP(CallbackSupportMixin, BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of :class:`LargeMLPClassifier` and :class:`LargeMLPRegressor`.

    Not for direct use: it holds parameter validation, the translation of
    parameters into an engine :class:`~sknn_large._engine.TrainConfig`, the
    fit loop's bookkeeping and the fitted attributes.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions(set(_SOLVERS) | {"lbfgs"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "penalty": [StrOptions(set(_PENALTIES)), None],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "device": [str, torch.device],
        "precision": [StrOptions(set(_PRECISIONS))],
        "cuda_graphs": ["boolean"],
        "checkpoint": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
    }

    @abstractmethod
    def __init__(
        self,
        hidden_layer_sizes,
        activation,
        solver,
        alpha,
        batch_size,
        learning_rate,
        learning_rate_init,
        power_t,
        max_iter,
        loss,
        shuffle,
        random_state,
        tol,
        verbose,
        warm_start,
        momentum,
        nesterovs_momentum,
        early_stopping,
        validation_fraction,
        beta_1,
        beta_2,
        epsilon,
        n_iter_no_change,
        max_fun,
        penalty,
        l1_ratio,
        dropout,
        device,
        precision,
        cuda_graphs,
        checkpoint,
        checkpoint_every,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.dropout = dropout
        self.device = device
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every

    # ------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _validate_input(self, X, y, incremental, reset):
        """Return validated ``X`` and a 2-D float target matrix."""

    @abstractmethod
    def _loss_name(self) -> str:
        """The engine loss for the current targets."""

    @abstractmethod
    def _score_fitted(self, raw, y, sample_weight) -> float:
        """Validation score from raw outputs (accuracy or R^2)."""

    def _class_sample_weight(self, Y):
        """Per-sample weights implied by the targets (``class_weight``)."""
        return None

    # ------------------------------------------------------------------ checks

    def _check_params(self, incremental: bool) -> None:
        """Checks that span several parameters, in one place."""
        sizes = _hidden_sizes(self.hidden_layer_sizes)
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        check_device_spec(self.device)
        if self.solver == "lbfgs" and self.dropout > 0:
            raise ValueError(
                "dropout > 0 is not supported with solver='lbfgs': L-BFGS needs a "
                "deterministic objective. Use a stochastic solver such as 'adam'."
            )
        if self.checkpoint and self.solver == "lbfgs":
            raise ValueError(
                "checkpoint is only supported by the stochastic solvers; "
                "solver='lbfgs' optimises in one SciPy call."
            )
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")

    # --------------------------------------------------------------- training

    def _dtypes(self, X) -> tuple[torch.dtype, torch.dtype | None]:
        """(parameter dtype, autocast dtype) for training.

        'auto' trains stochastic solvers in float32: mini-batch noise dwarfs
        float32 rounding and float32 is several times faster. L-BFGS keeps the
        input's dtype (float64 or float32, as scikit-learn does) because its line
        search and gradient-tolerance stop need precise gradients.
        """
        param_dtype, autocast = _PRECISIONS[self.precision]
        if param_dtype is None:
            float32_input = X.dtype == np.float32
            param_dtype = (
                torch.float32
                if float32_input or self.solver != "lbfgs"
                else torch.float64
            )
        return param_dtype, autocast

    def _initialize(self, n_features: int, rng: np.random.RandomState) -> None:
        """Build and initialise a fresh network and the training state."""
        dtype, _ = self._param_dtype
        sizes = _hidden_sizes(self.hidden_layer_sizes)
        # Built on the meta device: torch's own default initialisation would
        # draw from (and advance) the caller's global RNG, and be overwritten.
        with torch.device("meta"):
            module = build_mlp(
                n_features,
                sizes,
                self.n_outputs_,
                activation=self.activation,
                dropout=self.dropout,
            )
        # Allocate in the final dtype so float64 draws are not rounded to float32.
        module = module.to_empty(device=self.device_).to(dtype)
        init_glorot_(module, self.activation, rng)
        # Shuffling and dropout draw from torch; seed them from the same source.
        seed = int(rng.randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        dropout_seed = int(rng.randint(np.iinfo(np.int32).max))
        self.module_ = module
        self.n_layers_ = len(sizes) + 2
        self._state = TrainState(generator=generator, dropout_seed=dropout_seed)
        if self.solver in _STOCHASTIC_SOLVERS:
            if self.early_stopping:
                self._state.validation_scores = []
                self._state.best_validation_score = -np.inf
                self._state.best_loss = None
            else:
                self._state.best_loss = np.inf

    def _train_config(
        self, batch_size: int, incremental: bool, resume: bool = False
    ) -> TrainConfig:
        return TrainConfig(
            solver=self.solver,
            loss=self._loss_name(),
            learning_rate_init=self.learning_rate_init,
            learning_rate=self.learning_rate,
            power_t=self.power_t,
            momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            alpha=self.alpha,
            penalty=self.penalty,
            l1_ratio=self.l1_ratio,
            batch_size=batch_size,
            max_iter=self.max_iter,
            shuffle=self.shuffle,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping and not incremental,
            max_fun=self.max_fun,
            # The live bar replaces the per-iteration lines.
            verbose=0 if self._progress_bar(incremental) else int(self.verbose),
            incremental=incremental,
            resume=resume,
            autocast_dtype=self._param_dtype[1],
            cuda_graphs=self.cuda_graphs,
        )

    def _split_validation(self, X, Y, sample_weight, rng):
        """Hold out ``validation_fraction`` of the data (stratified for classes).

        Data read from where it lives (a memory-mapped file, a lazy array-like)
        is split by row number instead of copied: both parts become sorted
        :class:`~sknn_large._data.RowView` s of it, so memory stays bounded.
        The held-out rows are those an in-memory split of the same data picks.
        """
        if streams_from_source(X):
            return self._split_validation_rows(X, Y, sample_weight, rng)
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = [X, Y] if sample_weight is None else [X, Y, sample_weight]
        parts = train_test_split(
            *arrays,
            random_state=rng,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        if parts[1].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        sw_train = None if sample_weight is None else parts[4]
        sw_val = None if sample_weight is None else parts[5]
        return parts[0], parts[2], sw_train, parts[1], parts[3], sw_val

    def _split_validation_rows(self, X, Y, sample_weight, rng):
        rows = np.arange(X.shape[0])[:, None]
        tr, _, _, va, _, _ = self._split_validation(rows, Y, None, rng)
        view = X if isinstance(X, RowView) else RowView(X)
        parts = []
        for index in (np.sort(tr[:, 0]), np.sort(va[:, 0])):
            sw = None if sample_weight is None else sample_weight[index]
            parts.append((view.subset(index), Y[index], sw))
        return (*parts[0], *parts[1])

    def _validator(self, X_val, Y_val, sw_val):
        """A ``module -> score`` closure over the validation data.

        In-memory validation data moves to the device once; data read from
        where it lives is streamed through the network in blocks each time.
        """
        device, dtype = self.device_, self._param_dtype[0]
        if streams_from_source(X_val):
            rows = stream_rows(X_val)

            def outputs(module):
                blocks = iter_row_blocks(X_val, rows, device, dtype)
                return torch.cat([module(x).float().cpu() for x in blocks])

        else:
            x = next(iter_row_blocks(X_val, X_val.shape[0], device, dtype))

            def outputs(module):
                return module(x).float().cpu()

        def validate(module):
            with torch.inference_mode():
                raw = outputs(module).numpy().astype(np.float64)
            return self._score_fitted(raw, Y_val, sw_val)

        return validate

    def _resolve_batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is"
                " going to be clipped",
                stacklevel=2,
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params(incremental)
        first_pass = not hasattr(self, "module_") or (
            not self.warm_start and not incremental
        )
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        sample_weight = self._sample_weight(sample_weight, X, Y)
        rng = self._random_generator()
        resume = self._checkpoint_to_resume(X, incremental)
        if resume is not None:
            # Replaying the fit's starting random state rebuilds the same
            # initial network and early-stopping split as the interrupted run.
            rng = _checkpoint.rng_from_payload(resume["rng_start"])
        rng_start = _checkpoint.rng_to_payload(rng) if self.checkpoint else None
        self._setup_network(X, Y, rng, first_pass, resume)
        ctx = self._begin_callbacks(X, y, incremental)
        begin, end_hooks, bar = self._epoch_hooks(X, ctx, incremental, rng_start)
        try:
            self._train(
                X,
                Y,
                sample_weight,
                rng,
                incremental,
                resume is not None,
                begin,
                end_hooks,
            )
        finally:
            if bar is not None:
                bar.close()
        if self.checkpoint and not incremental and not self._state.interrupted:
            # Training finished: the next fit starts afresh.
            Path(self.checkpoint).unlink(missing_ok=True)
        if ctx is not None:
            ctx.call_on_fit_task_end(
                estimator=self, X=X, y=y, reconstruction_attributes={}
            )
        return self

    def _sample_weight(self, sample_weight, X, Y):
        """User sample weights times class weights, or None."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        class_sw = self._class_sample_weight(Y)
        if class_sw is None:
            return sample_weight
        return class_sw if sample_weight is None else sample_weight * class_sw

    def _new_network(self, X, Y, rng) -> None:
        """Choose the device and dtypes, then build and initialise the network."""
        self.device_ = worker_device(self.device)
        self._param_dtype = self._dtypes(X)
        # Fitted arrays and predictions follow the input's dtype, as in sklearn.
        self._output_dtype = X.dtype
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = _LOSSES[self._loss_name()].out_activation
        self._initialize(X.shape[1], rng)

    def _setup_network(self, X, Y, rng, first_pass: bool, resume) -> None:
        """A fresh network (first pass), else the existing one on its device."""
        if first_pass:
            self._new_network(X, Y, rng)
        else:
            self._prepare_continuation()
        if resume is not None:
            _checkpoint.restore_state(resume, self.module_, self._state)
            _log.info(
                "Resuming from checkpoint %s after epoch %d",
                os.fspath(self.checkpoint),
                self._state.n_iter,
            )

    def _epoch_hooks(self, X, ctx, incremental: bool, rng_start):
        """(begin hook, end hooks, progress bar) for this training call."""
        end_hooks = []
        if self.checkpoint and not incremental:
            end_hooks.append(self._checkpoint_hook(self._fingerprint(X), rng_start))
        begin = None
        if ctx is not None:
            begin, end = self._callback_hooks(ctx)
            end_hooks.append(end)
        bar = self._progress_bar(incremental)
        if bar is not None:
            end_hooks.append(bar)
        return begin, end_hooks, bar

    def _progress_bar(self, incremental: bool):
        """A live bar for verbose=1 in a terminal or notebook; else None.

        Elsewhere (logs, CI, captured output) verbose=1 prints scikit-learn's
        per-iteration lines, and verbose>=2 always does.
        """
        if (
            self.verbose != 1
            or incremental
            or self.solver not in _STOCHASTIC_SOLVERS
            or not _progress.interactive()
        ):
            return None
        return _progress.EpochProgress(self.max_iter)

    def _begin_callbacks(self, X, y, incremental: bool):
        """Open scikit-learn's callback context (scikit-learn >= 1.9 only)."""
        if not hasattr(self, "_init_callback_context"):
            return None
        epochs = 0
        if self.solver in _STOCHASTIC_SOLVERS:
            epochs = 1 if incremental else self.max_iter
        ctx = self._init_callback_context(max_subtasks=epochs)
        ctx.call_on_fit_task_begin(estimator=self, X=X, y=y)
        return ctx

    def _callback_hooks(self, ctx):
        """Epoch hooks that report each epoch as a callback subtask."""
        current = {}

        def begin(module, state):
            current["epoch"] = ctx.subcontext(task_name="epoch")
            current["epoch"].call_on_fit_task_begin(estimator=self)

        def end(module, state):
            return current.pop("epoch").call_on_fit_task_end(
                estimator=self,
                metadata={"loss": state.loss},
                reconstruction_attributes=lambda: {"module_": copy.deepcopy(module)},
            )

        return begin, end

    def _fingerprint(self, X) -> str:
        """What must match for a checkpoint to resume this fit."""
        free = {
            "verbose",
            "max_iter",
            "checkpoint",
            "checkpoint_every",
            "warm_start",
            "cuda_graphs",  # replays the same steps: resuming either way is exact
        }
        params = {k: v for k, v in self.get_params().items() if k not in free}
        classes = getattr(self, "classes_", None)
        classes = None if classes is None else np.asarray(classes).tolist()
        return repr((sorted(params.items(), key=str), X.shape, classes))

    def _checkpoint_to_resume(self, X, incremental: bool) -> dict | None:
        if not self.checkpoint or incremental or not Path(self.checkpoint).exists():
            return None
        payload = _checkpoint.read(self.checkpoint)
        if payload["fingerprint"] != self._fingerprint(X):
            raise ValueError(
                f"The checkpoint {os.fspath(self.checkpoint)!r} was written by a fit "
                "with other parameters or data; delete it or choose another path."
            )
        return payload

    def _checkpoint_hook(self, fingerprint: str, rng_start: dict):
        def hook(module, state):
            if state.n_iter % self.checkpoint_every == 0:
                payload = _checkpoint.make_payload(
                    module,
                    state,
                    fingerprint=fingerprint,
                    rng_start=rng_start,
                    global_rng=(self.device_.type, _global_rng(self.device_)),
                )
                _checkpoint.write_atomic(self.checkpoint, payload)

        return hook

    def _random_generator(self) -> np.random.RandomState:
        """``random_state`` as a RandomState; None draws fresh OS entropy.

        Unlike ``check_random_state(None)``, None never touches NumPy's global
        generator, so fitting leaves the caller's random state as it was.
        """
        if self.random_state is None:
            return np.random.RandomState(np.random.SeedSequence().generate_state(1))
        return check_random_state(self.random_state)

    def _prepare_continuation(self) -> None:
        """Move a loaded (CPU) model to its training device before training more."""
        self.device_ = worker_device(self.device)
        self.module_.to(self.device_)

    def _train(
        self,
        X,
        Y,
        sample_weight,
        rng,
        incremental,
        resume=False,
        on_epoch_begin=None,
        end_hooks=(),
    ) -> None:
        state = self._state
        use_validation = (
            self.early_stopping and not incremental and self.solver != "lbfgs"
        )
        validate = None
        if use_validation:
            X, Y, sample_weight, X_val, Y_val, sw_val = self._split_validation(
                X, Y, sample_weight, rng
            )
            validate = self._validator(X_val, Y_val, sw_val)
        cfg = self._train_config(
            self._resolve_batch_size(X.shape[0]), incremental, resume
        )
        feed = self._make_feed(X, Y, sample_weight, cfg.batch_size)
        _log.debug(
            "%s: %d samples on %s in %s via %s, batch_size=%d",
            type(self).__name__,
            feed.n_samples,
            self.device_,
            self._param_dtype[0],
            type(feed).__name__,
            cfg.batch_size,
        )
        state.interrupted = state.diverged = False
        state.messages = []
        on_epoch_end = None
        if end_hooks:
            # Every hook runs each epoch; any of them may ask to stop.
            def on_epoch_end(module, state):
                return any([hook(module, state) for hook in end_hooks])

        try:
            self._run_engine(feed, cfg, validate, on_epoch_begin, on_epoch_end)
        except torch.cuda.OutOfMemoryError as exc:
            del feed, validate
            gc.collect()
            if self.device_.type == "cuda":
                torch.cuda.empty_cache()
            raise MemoryError(
                f"Out of memory on {self.device_} while training with "
                f"batch_size={cfg.batch_size} and hidden_layer_sizes="
                f"{self.hidden_layer_sizes}. The training data and activations were "
                "released. Try a smaller batch_size or network, precision="
                "'bfloat16', or device='cpu'."
            ) from exc
        self._publish(state)
        self._report(state, cfg, incremental)

    def _run_engine(self, feed, cfg, validate, on_epoch_begin, on_epoch_end) -> None:
        state = self._state
        devices = [self.device_] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device_.type):
            # Dropout draws from the global generator: run it on a private stream
            # that continues across calls, so partial_fit epochs equal fit's.
            _set_global_rng(self.device_, state)
            if self.solver == "lbfgs":
                train_lbfgs(self.module_, feed, cfg, state)
            else:
                train(
                    self.module_,
                    feed,
                    cfg,
                    state,
                    validate=validate,
                    on_epoch_begin=on_epoch_begin,
                    on_epoch_end=on_epoch_end,
                )
            state.dropout_rng = (self.device_.type, _global_rng(self.device_))

    def _make_feed(self, X, Y, sample_weight, batch_size):
        loss = _LOSSES[self._loss_name()]
        target_dtype = torch.int64 if loss.index_targets else self._param_dtype[0]
        if loss.index_targets:
            Y = Y.argmax(axis=1)
        return make_feed(
            X,
            Y,
            sample_weight,
            batch_size=batch_size,
            device=self.device_,
            dtype=self._param_dtype[0],
            target_dtype=target_dtype,
        )

    def _publish(self, state: TrainState) -> None:
        """Expose the engine's results as scikit-learn's fitted attributes."""
        self._publish_weights()
        self.n_iter_ = state.n_iter
        self.t_ = state.t
        self.loss_ = state.loss
        self.loss_curve_ = state.loss_curve
        if self.solver in _STOCHASTIC_SOLVERS:
            self.best_loss_ = state.best_loss
            self.validation_scores_ = state.validation_scores
            self.best_validation_score_ = state.best_validation_score
            self._no_improvement_count = state.no_improvement_count

    def _publish_weights(self) -> None:
        """``coefs_``/``intercepts_`` from ``module_``, in the input's dtype."""
        coefs, intercepts = get_coefs(self.module_)
        self.coefs_ = [c.astype(self._output_dtype, copy=False) for c in coefs]
        self.intercepts_ = [
            b.astype(self._output_dtype, copy=False) for b in intercepts
        ]

    def save(self, path) -> None:
        """Save the fitted model to a safe file (safetensors weights + JSON).

        Loading it with :func:`sknn_large.load` never unpickles or runs code.

        Parameters
        ----------
        path : str or path-like
            Destination file; written atomically.
        """
        from ._persist import save  # persistence sits on top of the core

        save(self, path)

    def _report(self, state: TrainState, cfg: TrainConfig, incremental: bool) -> None:
        if state.interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=2)
        if state.diverged and not (cfg.early_stopping and state.best_params):
            raise ValueError(
                _DIVERGED.format(it=state.n_iter, lr=self.learning_rate_init)
            )
        if state.diverged:
            warnings.warn(
                "The loss became non-finite at iteration %d; training stopped and the"
                " weights with the best validation score were kept. Lower"
                " learning_rate_init or scale the inputs." % state.n_iter,
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if state.converged or incremental or state.interrupted:
            return
        if self.solver == "lbfgs":
            warnings.warn(
                "lbfgs failed to converge after %d iteration(s) (%s). Increase the"
                " number of iterations (max_iter) or the number of function"
                " evaluations (max_fun), or scale the data."
                % (state.n_iter, "; ".join(state.messages)),
                ConvergenceWarning,
                stacklevel=2,
            )
        else:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the"
                " optimization hasn't converged yet." % self.max_iter,
                ConvergenceWarning,
                stacklevel=2,
            )

    # -------------------------------------------------------------- predicting

    def _raw_output(self, X) -> np.ndarray:
        """Network outputs before the output activation, in blocks of rows."""
        X = _validate_data(
            self,
            X,
            accept_sparse=["csr", "csc"],
            dtype=(np.float64, np.float32),
            reset=False,
        )
        return self._raw_output_validated(X)

    def _raw_output_validated(self, X) -> np.ndarray:
        param = next(self.module_.parameters())
        self.module_.eval()
        block = _PREDICT_ROWS.get(param.device.type, _PREDICT_ROWS_ACCELERATOR)
        rows = min(X.shape[0], block)
        # One preallocated result: a list of per-block outputs kept the
        # allocator from reusing the blocks' activations (+1 GB over 1M rows).
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._output_dtype)
        with torch.inference_mode(), threads_for(self.module_, rows):
            start = 0
            for xb in iter_row_blocks(X, block, param.device, param.dtype):
                stop = start + xb.shape[0]
                out[start:stop] = self.module_(xb).cpu().numpy()
                start = stop
        return out

    def _output(self, raw: np.ndarray) -> np.ndarray:
        """Apply ``out_activation_`` to raw outputs."""
        fn = _OUT_ACTIVATIONS[self.out_activation_]
        return fn(torch.from_numpy(raw)).numpy()

    # ------------------------------------------------------------- persistence

    def __getstate__(self):
        # Tensors travel on the CPU so a CUDA-trained model loads anywhere.
        state = super().__getstate__()
        module = state.get("module_")
        if module is not None and next(module.parameters()).device.type != "cpu":
            state["module_"] = copy.deepcopy(module).cpu()
        if "_state" in state:
            state["_state"] = _state_to_cpu(state["_state"])
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _global_rng(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_global_rng(device: torch.device, state: TrainState) -> None:
    saved = state.dropout_rng
    if saved is None or saved[0] != device.type:
        torch.manual_seed(state.dropout_seed)
    elif device.type == "cuda":
        torch.cuda.set_rng_state(saved[1], device)
    else:
        torch.set_rng_state(saved[1])


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _state_to_cpu(state: TrainState) -> TrainState:
    out = copy.copy(state)
    out.optimizer_state = _to_cpu(state.optimizer_state)
    out.best_params = _to_cpu(state.best_params)
    return out


__all__ = ["BaseLargeMLP", "as_tensor"]
