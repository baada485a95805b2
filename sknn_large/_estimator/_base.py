"""The scikit-learn layer shared by the classifier and the regressor."""

from __future__ import annotations

import gc
import os
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight

from .. import _checkpoint
from .._checks import check_fit_range
from .._device import check_device_spec
from .._engine import (
    _ACTIVATIONS,
    _LOSSES,
    _PRECISIONS,
    _SOLVERS,
    STOCHASTIC,
    fit_members,
)
from .._engine._solvers import LEARNING_RATES
from . import _hooks, _plan
from ._inputs import hidden_sizes
from ._predict import PredictMixin

try:  # scikit-learn >= 1.9: its callback API (set_callbacks, ProgressBar, ...)
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # older scikit-learn has none; estimators work without it

    class CallbackSupportMixin:  # noqa: D101 - empty stand-in
        pass


_PENALTIES = ("l1", "l2", "elasticnet")


class BaseLargeMLP(
    PredictMixin, CallbackSupportMixin, BaseEstimator, metaclass=ABCMeta
):
    """Shared machinery of :class:`LargeMLPClassifier` and :class:`LargeMLPRegressor`.

    Not for direct use: it holds the parameters and their validation and
    drives a fit; ``_plan`` translates parameters into engine members and
    results into fitted attributes, ``_hooks`` adds checkpoints, callbacks
    and the progress bar, and :class:`PredictMixin` predicts.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions(set(_SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions(set(LEARNING_RATES))],
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
        """Return validated ``X`` and a 2-D target matrix."""

    @abstractmethod
    def _loss_name(self) -> str:
        """The engine loss for the current targets."""

    @abstractmethod
    def _score_fitted(self, raw, y, sample_weight) -> float:
        """Validation score from raw outputs (accuracy or R^2)."""

    def _class_sample_weight(self, Y, reference=None):
        """Per-sample weights implied by the targets (``class_weight``).

        With ``reference`` (the training targets), each row of ``Y`` weighs
        what a training row of its class weighs ('balanced' counts the
        training classes).
        """
        return None

    @abstractmethod
    def _validate_held_out(self, X_val, y_val):
        """Validate a validation set against the fitted inputs and targets.

        Returns ``X_val`` and its target matrix, encoded as the training
        targets are.
        """

    def _label_smoothing(self) -> float:
        """The label smoothing training uses (the classifier's parameter)."""
        return 0.0

    # ------------------------------------------------------------------ checks

    def _check_params(self, incremental: bool) -> None:
        """Checks that span several parameters, in one place."""
        sizes = hidden_sizes(self.hidden_layer_sizes)
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

    def _sample_weight(self, sample_weight, X, Y, reference=None):
        """User sample weights times class weights, or None."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        class_sw = self._class_sample_weight(Y, reference)
        if class_sw is None:
            return sample_weight
        return class_sw if sample_weight is None else sample_weight * class_sw

    def _random_generator(self) -> np.random.RandomState:
        """``random_state`` as a RandomState; None draws fresh OS entropy.

        Unlike ``check_random_state(None)``, None never touches NumPy's global
        generator, so fitting leaves the caller's random state as it was.
        """
        if self.random_state is None:
            return np.random.RandomState(np.random.SeedSequence().generate_state(1))
        return check_random_state(self.random_state)

    def _held_out(self, validation, Y):
        """The caller's validation set, checked and encoded; None for none.

        ``validation`` is ``(X_val, y_val, sample_weight_val)`` as passed to
        ``fit``; the result is encoded as the training data are, class
        weights included (a validation row weighs what a training row of its
        class weighs).
        """
        X_val, y_val, sw_val = validation
        if X_val is None and y_val is None:
            if sw_val is not None:
                raise ValueError("sample_weight_val is provided without X_val, y_val.")
            return None
        if y_val is None:
            raise ValueError("X_val is provided, but y_val was not provided.")
        if X_val is None:
            raise ValueError("y_val is provided, but X_val was not provided.")
        if self.solver not in STOCHASTIC:
            raise ValueError(
                "X_val and y_val need a stochastic solver: solver='lbfgs' has no "
                "epochs to score the validation set after."
            )
        X_val, Y_val = self._validate_held_out(X_val, y_val)
        if Y_val.shape[1] != Y.shape[1]:
            raise ValueError(
                f"y_val has {Y_val.shape[1]} outputs; the training targets have "
                f"{Y.shape[1]}."
            )
        return X_val, Y_val, self._sample_weight(sw_val, X_val, Y_val, reference=Y)

    def _prepare_fit(
        self, X, y, sample_weight, incremental: bool, first_pass: bool, validation=None
    ):
        """Validate, encode and set the network up as ``fit`` does.

        ``validation`` is ``(X_val, y_val, sample_weight_val)`` as passed to
        ``fit`` (or None). Returns ``(X, Y, sample_weight, rng, resume payload
        or None, the starting random state for checkpoints or None, the
        checkpoint fingerprint or None, the validated validation set or
        None)``.
        """
        self._check_params(incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        sample_weight = self._sample_weight(sample_weight, X, Y)
        held_out = None if validation is None else self._held_out(validation, Y)
        rng = self._random_generator()
        fp = _hooks.fingerprint(self, X, Y, sample_weight, held_out)
        resume = _hooks.checkpoint_to_resume(self, fp, incremental)
        if resume is not None:
            # Replaying the fit's starting random state rebuilds the same
            # initial network and early-stopping split as the interrupted run.
            rng = _checkpoint.rng_from_payload(resume["rng_start"])
        rng_start = _checkpoint.rng_to_payload(rng) if self.checkpoint else None
        if first_pass:
            _plan.new_network(self, X, Y, rng)
        else:
            _plan.continue_network(self)
        if resume is not None:
            _hooks.resume_from(self, resume)
        check_fit_range(self._param_dtype[0], X, Y, sample_weight)
        if held_out is not None:
            check_fit_range(self._param_dtype[0], *held_out)
        return X, Y, sample_weight, rng, resume, rng_start, fp, held_out

    def _fit(self, X, y, sample_weight=None, incremental=False, validation=None):
        """Train on ``(X, y)``; ``validation`` is ``(X_val, y_val, sw_val)`` or None."""
        first_pass = not hasattr(self, "module_") or (
            not self.warm_start and not incremental
        )
        y_in = y
        X, Y, sample_weight, rng, resume, rng_start, fp, held_out = self._prepare_fit(
            X, y, sample_weight, incremental, first_pass, validation
        )
        ctx = _hooks.begin_callbacks(self, X, y_in, incremental)
        bar = _hooks.progress_bar(self, incremental)
        hooks = _hooks.epoch_hooks(self, fp, ctx, incremental, rng_start, bar)
        try:
            member, feed = _plan.single_member(
                self,
                X,
                Y,
                sample_weight,
                rng,
                incremental,
                resume is not None,
                hooks,
                verbose=0 if bar is not None else None,
                held_out=held_out,
            )
            self._train(member, feed)
        finally:
            if bar is not None:
                bar.close()
        if self.checkpoint and not incremental and not self._state.interrupted:
            # Training finished: the next fit starts afresh.
            Path(self.checkpoint).unlink(missing_ok=True)
        _hooks.end_callbacks(self, ctx, X, y_in)
        return self

    def _train(self, member, feed) -> None:
        """Run the engine on one member, then publish and report."""
        try:
            fit_members([member], feed)
        except torch.cuda.OutOfMemoryError as exc:
            del feed
            gc.collect()
            if self.device_.type == "cuda":
                torch.cuda.empty_cache()
            raise MemoryError(
                f"Out of memory on {self.device_} while training with "
                f"batch_size={member.cfg.batch_size} and hidden_layer_sizes="
                f"{self.hidden_layer_sizes}. The training data and activations were "
                "released. Try a smaller batch_size or network, precision="
                "'bfloat16', or device='cpu'."
            ) from exc
        self._finish_member(member)

    # --------------------------------------------- the model-file protocol

    def __sknn_state__(self) -> dict:
        """The fitted state a model file stores (tensors on the CPU).

        With :meth:`__sknn_restore__`, the only way persistence reaches an
        estimator's internals: like ``__getstate__``/``__setstate__`` for
        pickle, it hands over a plain dict.

        Returns
        -------
        dict
            Attribute name -> value, as ``__getstate__`` gives them.
        """
        return self.__getstate__()

    def __sknn_restore__(self, attributes: dict) -> None:
        """Adopt a state read from a model file, checking it fits the parameters.

        Parameters
        ----------
        attributes : dict
            What :meth:`__sknn_state__` returned, ``module_`` included (on the
            CPU); ``coefs_``/``intercepts_`` are derived from it here.

        Raises
        ------
        ValueError
            If the parameters are invalid or the state contradicts them.
        """
        self._validate_params()
        self._check_params(incremental=False)
        if self.solver in STOCHASTIC:
            # Files written before the attribute existed.
            attributes.setdefault("validation_loss_curve_", None)
        vars(self).update(attributes)
        loss = _LOSSES[self._loss_name()]
        if self.out_activation_ != loss.out_activation:
            raise ValueError("the output activation does not match the loss")
        _plan.publish_weights(self)

    def _finish_member(self, member) -> None:
        _plan.publish(self, member.state)
        _plan.report(self, member.state, member.cfg, member.cfg.incremental)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
