"""LargeMLPClassifier: scikit-learn's MLPClassifier on PyTorch."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._checks import check_class_weight
from ._engine import STOCHASTIC
from ._estimator import BaseLargeMLP, validate_input
from ._labels import binarize_labels, indicator


def _has_partial_fit(est) -> bool:
    if est.solver not in STOCHASTIC:
        raise AttributeError(
            "partial_fit is only available for stochastic optimizers. "
            f"{est.solver} is not stochastic."
        )
    return True


class LargeMLPClassifier(ClassifierMixin, BaseLargeMLP):
    """Multi-layer perceptron classifier trained with PyTorch.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`:
    the same parameters, defaults and fitted attributes, plus penalties beyond
    L2, dropout, more activations and solvers, class weights, and training on a
    GPU when one is available. It minimises the log-loss (softmax for several
    exclusive classes, logistic per output for binary and multilabel targets).

    Parameters
    ----------
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
        Hold out ``validation_fraction`` of the data (stratified) and stop when
        its accuracy stops improving; the best weights are kept. With
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
    class_weight : dict, 'balanced' or None, default=None
        Weights of classes, multiplied into the sample weights. 'balanced'
        uses ``n_samples / (n_classes * np.bincount(y))``.
    label_smoothing : float in [0, 1), default=0.0
        Label smoothing ``eps``, as in
        :class:`torch.nn.CrossEntropyLoss`: the loss is the cross-entropy
        against ``(1 - eps) * onehot + eps / n_classes`` (softmax outputs),
        or against ``y * (1 - eps) + eps / 2`` for each logistic output
        (binary and multilabel targets). It discourages over-confident
        probabilities. ``loss_curve_`` reports the smoothed loss (its minimum
        is then above 0). 0 trains exactly as scikit-learn's MLPClassifier.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels.
    loss_ : float
        The current loss.
    best_loss_ : float or None
        Minimum training loss reached (None with ``early_stopping=True``).
    loss_curve_ : list of float
        Loss at the end of each iteration.
    validation_scores_ : list of float or None
        Accuracy on the held-out rows after each epoch: the early-stopping
        split, or ``X_val`` when it is passed to ``fit``. None when the fit had
        no held-out rows.
    validation_loss_curve_ : list of float or None
        The training loss on the same held-out rows after each epoch: the
        same loss (with ``label_smoothing``) and sample weighting as
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
        'softmax' (multiclass) or 'logistic' (binary, multilabel).
    module_ : torch.nn.Module
        The trained network.
    device_ : torch.device
        The device it was trained on.

    See Also
    --------
    LargeMLPRegressor : The regressor.
    sklearn.neural_network.MLPClassifier : The estimator this one mirrors.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LargeMLPClassifier(hidden_layer_sizes=(16,), max_iter=300,
    ...                          device="cpu", random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **BaseLargeMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
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
        class_weight=None,
        label_smoothing=0.0,
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
            loss="log_loss",
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
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    # ------------------------------------------------------------- targets

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_input(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        target_type = type_of_target(y)
        if target_type.startswith("continuous"):
            raise ValueError(
                f"Unknown label type: {target_type!r}. LargeMLPClassifier needs "
                "discrete class labels; for a continuous target use "
                "LargeMLPRegressor."
            )
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            if y.dtype.kind in "OUiu" and target_type in ("binary", "multiclass"):
                self._label_binarizer, Y = binarize_labels(y)
                self.classes_ = self._label_binarizer.classes_
                return X, Y
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            # Labels of the kind binarize_labels encodes, for a binarizer
            # fitted on such labels: encoded from one np.unique here too, as
            # LabelBinarizer.transform's checks cost a 32-row partial_fit
            # 0.44 ms of its 2.2 ms, and unique_labels 0.09 ms more.
            codes = None
            if (
                y.dtype.kind in "OUiu"
                and target_type in ("binary", "multiclass")
                and self._label_binarizer.y_type_ in ("binary", "multiclass")
            ):
                classes, codes = np.unique(y, return_inverse=True)
            else:
                classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
            if codes is not None:
                where = np.searchsorted(self.classes_, classes)
                return X, indicator(where[codes], len(self.classes_))
        # bool keeps float32 inputs from being upcast by the label matrix.
        return X, self._label_binarizer.transform(y).astype(bool)

    def _class_sample_weight(self, Y, reference=None):
        if self.class_weight is None:
            return None
        check_class_weight(self.class_weight)
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets.")
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_)
            if unknown:
                raise ValueError(
                    f"class_weight names classes not in the data: {sorted(unknown)}."
                )
        index = Y.argmax(axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(int)
        if reference is not None:
            # Each class weighs what it weighs among the training rows.
            ref = reference.argmax(axis=1) if Y.shape[1] > 1 else reference[:, 0]
            per_class = np.ones(len(self.classes_))
            per_class[ref.astype(int)] = self._class_sample_weight(reference)
            return per_class[index]
        return compute_sample_weight(self.class_weight, self.classes_[index])

    def _validate_held_out(self, X_val, y_val):
        X_val, y_val = validate_input(
            self,
            X_val,
            y_val,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=False,
        )
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        multilabel = type_of_target(y_val).startswith("multilabel")
        if multilabel != self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError(
                "y_val must be of the training targets' kind: "
                f"{self._label_binarizer.y_type_!r}, got {type_of_target(y_val)!r}."
            )
        if not multilabel:
            unseen = np.setdiff1d(unique_labels(y_val), self.classes_)
            if len(unseen):
                raise ValueError(
                    f"y_val has classes not in the training data: {unseen}. "
                    f"The classes are {self.classes_}."
                )
        return X_val, self._label_binarizer.transform(y_val).astype(bool)

    def _label_smoothing(self) -> float:
        return self.label_smoothing

    def _loss_name(self) -> str:
        if self._label_binarizer.y_type_ == "multiclass":
            return "log_loss"
        return "binary_log_loss"

    def _score_fitted(self, raw, y, sample_weight) -> float:
        if not np.isfinite(raw).all():
            return np.nan
        # accuracy_score of the decoded labels, computed on the encoded ones:
        # it runs after every epoch of every member, where sklearn's target
        # checks would cost more than the scoring itself.
        decision = self._decision(raw)
        if self._label_binarizer.y_type_ == "multiclass":
            correct = decision.argmax(axis=1) == np.asarray(y).argmax(axis=1)
        else:  # binary and multilabel: LabelBinarizer's 0.5 threshold
            n = decision.shape[0]
            pred = decision.reshape(n, -1) > 0.5
            correct = np.all(pred == (np.asarray(y).reshape(n, -1) > 0.5), axis=1)
        return float(np.average(correct, weights=sample_weight))

    def _decision(self, raw):
        out = self._output(raw)
        if self.out_activation_ == "logistic":
            # A saturated sigmoid rounds to exactly 0 or 1; keep probabilities
            # strictly inside (0, 1) so their logs stay finite.
            eps = np.finfo(out.dtype).eps
            out = np.clip(out, eps, 1 - eps)
        return out.ravel() if self.n_outputs_ == 1 else out

    # ------------------------------------------------------------- fitting

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
            Class labels, or a label indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        X_val : {array-like, sparse matrix} of shape (n_val, n_features), \
default=None
            A validation set, scored after every epoch (stochastic solvers
            only). With ``early_stopping=True`` it replaces the
            ``validation_fraction`` split (every row of ``X`` trains) and the
            weights of the best-scoring epoch are kept; without early stopping
            the scores are recorded in ``validation_scores_`` and
            ``validation_loss_curve_`` and training stops as usual. In a
            :class:`~sklearn.pipeline.Pipeline`, ``transform_input=["X_val"]``
            transforms it like ``X``.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Labels of ``X_val``, among the training classes. Required with
            ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows (times ``class_weight``, as the
            training rows are).

        Returns
        -------
        self : LargeMLPClassifier
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
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array-like of shape (n_classes,), default=None
            All classes that can appear across calls. Required on the first
            call, ignored afterwards.

        Returns
        -------
        self : LargeMLPClassifier
            The updated estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    # ---------------------------------------------------------- predicting

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted classes (an indicator matrix for multilabel).
        """
        check_is_fitted(self)
        return self._label_binarizer.inverse_transform(
            self._decision(self._raw_output(X))
        )

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Probabilities of each class, in the order of ``classes_``.
        """
        check_is_fitted(self)
        out = self._decision(self._raw_output(X))
        if out.ndim == 1:
            return np.vstack([1 - out, out]).T
        return out

    def predict_log_proba(self, X):
        """Logarithm of the probability estimates.

        Computed as ``np.log(predict_proba(X))``, as scikit-learn does, so the
        two always agree (including on ties between saturated probabilities).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            Log-probabilities of each class, in the order of ``classes_``.
        """
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
