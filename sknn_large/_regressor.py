"""LargeMLPRegressor: scikit-learn's MLPRegressor on PyTorch."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._classifier import _has_partial_fit
from ._estimator import BaseLargeMLP, validate_input


class LargeMLPRegressor(RegressorMixin, BaseLargeMLP):
    """Multi-layer perceptron regressor trained with PyTorch.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`:
    the same parameters, defaults and fitted attributes, plus penalties beyond
    L2, dropout, more activations and solvers, and training on a GPU when one
    is available. Single- and multi-output targets are supported.

    Parameters
    ----------
    loss : {'squared_error', 'poisson', 'huber', 'absolute_error'}, \
            default='squared_error'
        'squared_error' is half the mean squared error; 'poisson' is half the
        Poisson deviance with a log link (predictions are ``exp`` of the
        network's output), for non-negative targets such as counts; 'huber'
        is quadratic for residuals within 1 and linear beyond (robust to
        outliers; scale the targets so that 1 is a small residual);
        'absolute_error' is the mean absolute error (its gradient is the sign
        of the residual).
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu', 'gelu', 'silu', \
'leaky_relu', 'elu'}, default='relu'
        Activation function of the hidden layers.
    solver : {'adam', 'sgd', 'lbfgs', 'adamw', 'rmsprop'}, default='adam'
        The weight optimiser. 'lbfgs' is full-batch L-BFGS (SciPy's L-BFGS-B);
        'sgd' supports momentum and Nesterov momentum; 'adamw' applies the L2
        part of the penalty as decoupled weight decay.
    alpha : float, default=1e-4
        Strength of the penalty. For L2 the batch loss gains
        ``0.5 * alpha * sum(W ** 2) / n_samples`` (``n_samples`` being the
        batch's size, or its sum of sample weights), exactly as in
        scikit-learn; biases are not penalised.
    batch_size : int or 'auto', default='auto'
        Mini-batch size of the stochastic solvers; 'auto' is
        ``min(200, n_samples)``. Ignored by 'lbfgs'.
    learning_rate : str, default='constant'
        Learning-rate schedule: 'constant', 'invscaling', 'adaptive', 'cosine',
        'warmup_cosine' or 'onecycle'. 'invscaling' and 'adaptive' are scikit-learn's
        per-epoch rules for solver='sgd' only. The others apply to every stochastic
        solver and are stepped every batch over the batches of ``max_iter`` epochs:
        'cosine' decays ``learning_rate_init`` to 0 along a half cosine, 'warmup_cosine'
        first warms up linearly over 5 % of the steps, 'onecycle' rises from
        ``learning_rate_init / 25`` to ``learning_rate_init`` over 30 % of the steps and
        then decays to ``learning_rate_init / 1e4``. Early stopping may end training
        before the schedule does; more ``partial_fit`` calls keep its final rate.
    learning_rate_init : float, default=1e-3
        Initial learning rate of the stochastic solvers.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum epochs (stochastic solvers) or iterations ('lbfgs').
    shuffle : bool, default=True
        Whether to shuffle samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and the early-stopping
        split. With an int, CPU results are repeatable bit for bit. The global
        NumPy and torch random states are left untouched.
    tol : float, default=1e-4
        Improvement threshold for the stopping rule.
    verbose : bool or int, default=False
        Whether to print progress (``Iteration N, loss = ...``) to stdout.
    warm_start : bool, default=False
        Reuse the previous solution as initialisation on the next ``fit``.
    momentum : float, default=0.9
        Momentum of 'sgd' (and 'rmsprop').
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with 'sgd' when ``momentum > 0``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when its R^2
        stops improving; the best weights are kept. With
        ``fit(X, y, X_val=..., y_val=...)`` the given set is held out instead.
    validation_fraction : float, default=0.1
        Share of training data held out for early stopping. Not used when
        ``fit`` is given a validation set (``X_val``, ``y_val``).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates ('rmsprop' uses ``beta_2``).
    epsilon : float, default=1e-8
        Numerical stability constant of Adam, AdamW and RMSprop.
    n_iter_no_change : int, default=10
        Epochs without ``tol`` improvement before stopping.
    max_fun : int, default=15000
        Maximum loss evaluations of 'lbfgs'.
    penalty : {'l2', 'l1', 'elasticnet'} or None, default='l2'
        Weight penalty. L1 adds ``alpha * sum(|W|) / n_samples``; elastic net
        adds ``alpha * (l1_ratio * sum(|W|) + 0.5 * (1 - l1_ratio) *
        sum(W ** 2)) / n_samples``.
    l1_ratio : float, default=0.15
        Elastic-net mixing (0 is pure L2, 1 pure L1).
    dropout : float, default=0.0
        Probability of zeroing each hidden unit after its activation, in
        training only. Not available with 'lbfgs'.
    device : str or torch.device, default='auto'
        'auto' trains on CUDA when available, else on the CPU; also 'cpu',
        'cuda', 'cuda:N' or 'mps'. Resolved when fitting.
    precision : {'auto', 'float32', 'float64', 'bfloat16'}, default='auto'
        Numeric precision of training. 'auto' trains the stochastic solvers in
        float32 (mini-batch noise dwarfs its rounding, and it is several times
        faster) and 'lbfgs' in the input's dtype, whose line search needs
        precise gradients. ``coefs_``, ``intercepts_`` and predictions always
        follow the input's dtype, as in scikit-learn. 'float64' reproduces
        scikit-learn's arithmetic; 'bfloat16' keeps float32 weights and runs the
        matrix products in bfloat16, rounding as autocast does (fast on recent
        GPUs, and on CPUs with AMX for wide layers; changes results slightly;
        a CPU fit warns unless it measures bfloat16 at least 5 % faster).
    cuda_graphs : bool, default=False
        Capture the training step in a CUDA graph and replay it, when training
        on a CUDA device with a stochastic solver (ignored elsewhere). Small
        networks are then no longer bound by kernel-launch overhead. The step
        replays the same kernels on the same data, so results match the plain
        path up to floating-point non-determinism of GPU kernels; the last,
        smaller batch of each epoch runs uncaptured, and the step is captured
        again whenever the learning rate changes. Off by default until it has
        been measured on more hardware (see the GPU guide).
    checkpoint : str, path-like or None, default=None
        File to checkpoint training to (stochastic solvers). Every
        ``checkpoint_every`` epochs the complete training state is written
        atomically. If the file exists when ``fit`` starts and was written by a
        fit with the same parameters and data shape, training resumes from it
        and ends with exactly the weights an uninterrupted run would have (on
        the CPU); otherwise ``fit`` raises. The file is deleted once training
        finishes; it is kept when training is interrupted.
    checkpoint_every : int, default=1
        Epochs between checkpoints.

    Attributes
    ----------
    loss_ : float
        The current loss.
    best_loss_ : float or None
        Minimum training loss reached (None with ``early_stopping=True``).
    loss_curve_ : list of float
        Loss at the end of each iteration.
    validation_scores_ : list of float or None
        R^2 on the held-out rows after each epoch: the early-stopping
        split, or ``X_val`` when it is passed to ``fit``. None when the fit had
        no held-out rows.
    validation_loss_curve_ : list of float or None
        The training loss on the same held-out rows after each epoch: the
        same loss and sample weighting as
        ``loss_curve_``, averaged over the held-out rows, without the penalty
        term (``loss_curve_`` includes it). None when the fit had no held-out
        rows, as ``validation_scores_``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``; with ``X_val`` and no early stopping
        the best score seen, the final weights being those of the last epoch.
    t_ : int
        Training samples seen.
    coefs_ : list of ndarray of shape (n_fan_in, n_fan_out)
        Weight matrices, ``coefs_[i]`` between layer ``i`` and ``i + 1``.
    intercepts_ : list of ndarray of shape (n_fan_out,)
        Bias vectors.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when ``X`` had string column names.
    n_iter_ : int
        Iterations the solver ran in the last call.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        'identity' (squared error) or 'exp' (Poisson).
    module_ : torch.nn.Module
        The trained network.
    device_ : torch.device
        The device it was trained on.

    See Also
    --------
    LargeMLPClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : The estimator this one mirrors.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknn_large import LargeMLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = make_pipeline(
    ...     StandardScaler(),
    ...     LargeMLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01,
    ...                       max_iter=500, device="cpu", random_state=0),
    ... ).fit(X, y / y.std())
    >>> reg.score(X, y / y.std()) > 0.5
    True
    """

    _parameter_constraints: dict = {
        **BaseLargeMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson", "huber", "absolute_error"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        penalty="l2",
        l1_ratio=0.15,
        dropout=0.0,
        device="auto",
        precision="auto",
        cuda_graphs=False,
        checkpoint=None,
        checkpoint_every=1,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss=loss,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            penalty=penalty,
            l1_ratio=l1_ratio,
            dropout=dropout,
            device=device,
            precision=precision,
            cuda_graphs=cuda_graphs,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_input(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for Poisson "
                "regression."
            )
        return X, y.reshape(y.shape[0], -1)

    def _validate_held_out(self, X_val, y_val):
        return self._validate_input(X_val, y_val, incremental=False, reset=False)

    def _loss_name(self) -> str:
        return self.loss

    def _score_fitted(self, raw, y, sample_weight) -> float:
        pred = self._output(raw)
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y, pred, sample_weight=sample_weight))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        X_val=None,
        y_val=None,
        sample_weight_val=None,
    ):
        """Fit the model to data matrix ``X`` and targets ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        X_val : {array-like, sparse matrix} of shape (n_val, n_features), \
default=None
            A validation set, scored (R^2) after every epoch (stochastic
            solvers only). With ``early_stopping=True`` it replaces the
            ``validation_fraction`` split (every row of ``X`` trains) and the
            weights of the best-scoring epoch are kept; without early stopping
            the scores are recorded in ``validation_scores_`` and
            ``validation_loss_curve_`` and training stops as usual. In a
            :class:`~sklearn.pipeline.Pipeline`, ``transform_input=["X_val"]``
            transforms it like ``X``.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``. Required with ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : LargeMLPRegressor
            The fitted estimator.
        """
        return self._fit(
            X,
            y,
            sample_weight=sample_weight,
            incremental=False,
            validation=(X_val, y_val, sample_weight_val),
        )

    @available_if(_has_partial_fit)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : LargeMLPRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predict with the trained network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        check_is_fitted(self)
        pred = self._output(self._raw_output(X))
        return pred.ravel() if pred.shape[1] == 1 else pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
