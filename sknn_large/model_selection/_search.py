"""The vectorised searches (see the package docstring for what they do)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    ParameterSampler,
    RandomizedSearchCV,
    check_cv,
)
from sklearn.model_selection._validation import (
    _insert_error_scores,
    _score,
    _warn_or_raise_about_fit_failures,
)
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, indexable
from sklearn.utils.metadata_routing import process_routing
from sklearn.utils.validation import _check_method_params, _num_samples

from .._device import resolve_device
from .._estimator import fit_many
from .._estimator import hidden_sizes as _hidden_sizes
from ._folds import (
    _assemble,
    _failed,
    _final_estimator,
    _Fold,
    _routing_enabled,
    _split_params,
    _step_fit_params,
    _transformed_folds,
)

# Per-batch multiply-adds of one network above which stacking stops paying on
# the CPU (the same bound above which one fit uses several threads well).
_STACKING_LIMIT = 1e7

__all__ = ["VectorizedGridSearchCV", "VectorizedRandomizedSearchCV"]


class _VectorizedSearch:
    """The fit shared by the vectorised searches (mixed in left of sklearn's)."""

    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, vectorised across fits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        **params : dict of str -> object
            Parameters for the estimator's ``fit``, the scorer and the CV
            splitter, as in :meth:`sklearn.model_selection.GridSearchCV.fit`:
            ``sample_weight`` (``step__sample_weight`` for a pipeline) is split
            with the folds and reaches every fit and the refit, ``groups``
            goes to the splitter, and with metadata routing enabled
            :func:`~sklearn.utils.metadata_routing.process_routing` decides.
            Parameters other than sample weights for the sknn_large step (or
            a pipeline with ``transform_input``) make the search run as
            scikit-learn's, one fit per job (``vectorized_`` is False).

        Returns
        -------
        self : object
            The fitted search.
        """
        candidates = list(self._candidates())
        stacked = self._stacking_pays(candidates, X, y)
        self.vectorized_ = stacked and self._stackable_params(X, params)
        if not self.vectorized_:
            # scikit-learn's own search: one fit per job, spread over n_jobs.
            return super().fit(X, y, **params)
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        routed = self._get_routed_params_for_fit(params)
        split = routed.splitter.split
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        self.n_splits_ = cv.get_n_splits(X, y, **split)
        folds = [_Fold(i, tr, te) for i, (tr, te) in enumerate(cv.split(X, y, **split))]
        out = self._evaluate(candidates, folds, X, y, scorers, routed)
        _warn_or_raise_about_fit_failures(out, self.error_score)
        if callable(self.scoring):
            _insert_error_scores(out, self.error_score)
        results = self._format_results(candidates, self.n_splits_, out)
        self.multimetric_ = isinstance(out[0]["test_scores"], dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(out[0]["test_scores"])
            refit_metric = self.refit
        self._select_and_refit(results, refit_metric, X, y, routed.estimator.fit)
        is_multi = isinstance(scorers, _MultimetricScorer)
        self.scorer_ = scorers._scorers if is_multi else scorers
        self.cv_results_ = results
        return self

    def _stackable_params(self, X, params: dict) -> bool:
        """Whether the stacked run can honour these fit parameters.

        It can pass the sknn_large step sample weights (one per row) and a
        pipeline's preprocessing any parameters. Anything else would fail or
        mean something the stacked run does not do, so those searches run as
        scikit-learn's, which then behaves (or raises) exactly as it does.
        Nothing here warns or raises: routing errors surface from that run.
        """
        if not params:
            return True
        est = self.estimator
        if getattr(est, "transform_input", None) is not None:
            return False
        try:
            if _routing_enabled():
                fit = process_routing(self, "fit", **params).estimator.fit
            else:
                fit = {k: v for k, v in params.items() if k != "groups"}
                if isinstance(est, Pipeline):
                    names = {name for name, _ in est.steps}
                    if any(k.split("__", 1)[0] not in names for k in fit):
                        return False  # Pipeline.fit rejects these
            own = _step_fit_params(est, fit)[1]
        except Exception:
            return False
        if set(own) - {"sample_weight"}:
            return False
        sw = own.get("sample_weight")
        return sw is None or (np.ndim(sw) == 1 and len(sw) == _num_samples(X))

    def _stacking_pays(self, candidates, X, y) -> bool:
        """Whether training the fits as stacks beats one fit per job.

        On a GPU it always does. On the CPU a network whose step is already
        big enough to keep the cores busy (``_STACKING_LIMIT`` multiply-adds
        per batch) gains nothing from stacking: measured 0.66x the speed of
        ``GridSearchCV(n_jobs=-1)`` for 50 -> 256 -> 256 -> 5 at batch 256,
        against 3.5x faster for 50 -> 16 -> 5. Those searches run as
        scikit-learn's, so they are never slower than it.
        """
        n_in = X.shape[1]
        n_out = len(np.unique(y)) if is_classifier(self.estimator) else 1
        if np.ndim(y) == 2:
            n_out = np.shape(y)[1]
        for cand in candidates:
            pre, own = _split_params(self.estimator, cand)
            est = clone(_final_estimator(self.estimator, pre)).set_params(**own)
            if resolve_device(est.device).type != "cpu":
                continue
            batch = 200 if est.batch_size == "auto" else est.batch_size
            widths = [n_in, *_hidden_sizes(est.hidden_layer_sizes), n_out]
            macs = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
            if min(batch, len(X)) * macs > _STACKING_LIMIT:
                return False
        return True

    def _select_and_refit(self, results: dict, refit_metric, X, y, fit_params):
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(
                self.refit, refit_metric, results
            )
            if not callable(self.refit):
                key = f"mean_test_{refit_metric}"
                self.best_score_ = results[key][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            best = clone(self.estimator).set_params(
                **clone(self.best_params_, safe=False)
            )
            start = time.time()
            self.best_estimator_ = best.fit(X, y, **fit_params)
            self.refit_time_ = time.time() - start
            if hasattr(best, "feature_names_in_"):
                self.feature_names_in_ = best.feature_names_in_

    def _evaluate(self, candidates, folds, X, y, scorer, routed) -> list[dict]:
        """Results of every (candidate, fold) job, candidate-major.

        ``routed`` holds the fit parameters routed to the estimator and the
        scorer (``routed.estimator.fit``, ``routed.scorer.score``).
        """
        n_folds = len(folds)
        out: list[dict | None] = [None] * (len(candidates) * n_folds)
        by_prefix: dict[str, list[int]] = {}
        for c, cand in enumerate(candidates):
            pre, _ = _split_params(self.estimator, cand)
            by_prefix.setdefault(repr(sorted(pre.items(), key=str)), []).append(c)
        for members in by_prefix.values():
            jobs = self._run_prefix(candidates, members, folds, X, y, scorer, routed)
            for (c, f), result in jobs.items():
                out[c * n_folds + f] = result
        return out

    def _run_prefix(self, candidates, members, folds, X, y, scorer, routed):
        """Train and score the candidates sharing one preprocessing setting."""
        pre_params, _ = _split_params(self.estimator, candidates[members[0]])
        data = _transformed_folds(
            self.estimator, pre_params, X, y, folds, routed.estimator.fit
        )
        Xt = data.X
        if Xt is not None and not hasattr(Xt, "tocsr"):  # sparse stays sparse
            Xt = np.asarray(Xt)
        results = {}
        for f, exc in enumerate(data.errors):
            if exc is not None:  # the fold's preprocessing failed: so do its jobs
                for c in members:
                    results[(c, f)] = self._failed_job(exc, scorer, folds[f], 0.0)
        jobs = [
            (c, f) for c in members for f in range(len(folds)) if data.errors[f] is None
        ]
        estimators = [
            clone(_final_estimator(self.estimator, pre_params)).set_params(
                **_split_params(self.estimator, candidates[c])[1]
            )
            for c, _ in jobs
        ]
        start = time.time()
        fitted = []
        if jobs:
            fitted = fit_many(
                estimators,
                Xt,
                np.asarray(data.y),
                [data.rows[f] for _, f in jobs],
                sample_weight=data.sample_weight,
            )
        fit_time = (time.time() - start) / max(1, len(jobs))
        for (c, f), model in zip(jobs, fitted, strict=True):
            if isinstance(model, BaseException):
                results[(c, f)] = self._failed_job(model, scorer, folds[f], fit_time)
                continue
            model = _assemble(self.estimator, candidates[c], data.prefixes[f], model)
            result = self._score_job(model, folds[f], X, y, scorer, routed)
            result.update(fit_time=fit_time, n_test_samples=len(folds[f].test))
            results[(c, f)] = result
        return results

    def _failed_job(self, exc, scorer, fold: _Fold, fit_time: float) -> dict:
        result = _failed(exc, scorer, self.error_score, self.return_train_score)
        result.update(fit_time=fit_time, score_time=0.0, n_test_samples=len(fold.test))
        return result

    def _score_job(self, model, fold: _Fold, X, y, scorer, routed) -> dict:
        """Score one fitted job, with the scorer's parameters split by fold.

        The scorer gets exactly what GridSearchCV routes to it
        (``routed.scorer.score``), test or training rows of each.
        """
        start = time.time()
        score_params = routed.scorer.score
        X_test, y_test = _safe_indexing(X, fold.test), _safe_indexing(y, fold.test)
        error = self.error_score
        test_params = _check_method_params(X, params=score_params, indices=fold.test)
        result = {
            "fit_error": None,
            "test_scores": _score(model, X_test, y_test, scorer, test_params, error),
        }
        if self.return_train_score:
            X_tr, y_tr = _safe_indexing(X, fold.train), _safe_indexing(y, fold.train)
            train_params = _check_method_params(
                X, params=score_params, indices=fold.train
            )
            result["train_scores"] = _score(
                model, X_tr, y_tr, scorer, train_params, error
            )
        result["score_time"] = time.time() - start
        return result


class VectorizedGridSearchCV(_VectorizedSearch, GridSearchCV):
    """Exhaustive search over a grid, with the fits trained side by side.

    A drop-in for :class:`sklearn.model_selection.GridSearchCV` over a
    :class:`~sknn_large.LargeMLPClassifier`, a
    :class:`~sknn_large.LargeMLPRegressor` or a
    :class:`~sklearn.pipeline.Pipeline` ending in one. Every (candidate,
    fold) fit that shares an architecture (hidden sizes, activation, solver,
    batch size) trains in one vectorised run: each member keeps its own
    initialisation, batch order, stopping rule and hyper-parameters, and ends
    with the weights the same model trained alone would have. Fits that cannot
    be vectorised (``solver='lbfgs'``, sparse input) run one at a time. A
    pipeline's preprocessing is fitted once per fold and preprocessing
    setting.

    Parameters
    ----------
    estimator : estimator object
        A sknn_large estimator or a pipeline ending in one.
    param_grid : dict or list of dicts
        Parameter names (``step__param`` for pipelines) to lists of values.
    scoring : str, callable, list, tuple or dict, default=None
        As in :class:`~sklearn.model_selection.GridSearchCV`; None uses the
        estimator's ``score``.
    n_jobs : int, default=None
        Jobs to run in parallel when the search runs one fit per job: on the
        CPU, for networks too large to gain from stacking (see
        ``vectorized_``). Stacked training ignores it.
    refit : bool, str or callable, default=True
        Refit the best candidate on the whole data set (one ordinary fit).
    cv : int, cross-validation generator or iterable, default=None
        Splitting strategy (5-fold, stratified for classifiers, by default).
    verbose : int, default=0
        Verbosity of the members' training.
    pre_dispatch : int or str, default='2*n_jobs'
        Ignored.
    error_score : 'raise' or numeric, default=np.nan
        Score given to fits that fail.
    return_train_score : bool, default=False
        Also score each fit on its training rows.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        Per-candidate results, with the keys and layout of GridSearchCV's.
        ``fit_time`` is each job's share of its vectorised run.
    best_estimator_ : estimator
        The refitted best candidate (when ``refit``).
    best_score_ : float
        Mean cross-validated score of the best candidate.
    best_params_ : dict
        Parameters of the best candidate.
    best_index_ : int
        Index of the best candidate in ``cv_results_``.
    scorer_ : callable or dict
        The scorer(s) used.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds spent refitting the best candidate.
    multimetric_ : bool
        Whether several metrics were evaluated.
    vectorized_ : bool
        Whether the fits were trained as stacks. False on the CPU when the
        network is too large for stacking to pay, or when ``fit`` got
        parameters the stacked run cannot honour (see ``fit``); the search
        then ran exactly as scikit-learn's does.

    See Also
    --------
    VectorizedRandomizedSearchCV : Randomised search, vectorised the same way.
    sklearn.model_selection.GridSearchCV : The search this one mirrors.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> from sknn_large.model_selection import VectorizedGridSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = VectorizedGridSearchCV(
    ...     LargeMLPClassifier((16,), max_iter=50, device="cpu", random_state=0),
    ...     {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1e-2]},
    ...     cv=3,
    ... ).fit(X, y)
    >>> sorted(search.best_params_)
    ['alpha', 'learning_rate_init']
    >>> search.cv_results_["mean_test_score"].shape
    (4,)
    """

    def _candidates(self):
        return ParameterGrid(self.param_grid)


class VectorizedRandomizedSearchCV(_VectorizedSearch, RandomizedSearchCV):
    """Randomised search, with the sampled fits trained side by side.

    A drop-in for :class:`sklearn.model_selection.RandomizedSearchCV`; see
    :class:`VectorizedGridSearchCV` for how the fits are vectorised.

    Parameters
    ----------
    estimator : estimator object
        A sknn_large estimator or a pipeline ending in one.
    param_distributions : dict or list of dicts
        Parameter names to distributions (with ``rvs``) or lists of values.
    n_iter : int, default=10
        Number of sampled candidates.
    scoring : str, callable, list, tuple or dict, default=None
        As in :class:`~sklearn.model_selection.RandomizedSearchCV`.
    n_jobs : int, default=None
        Jobs to run in parallel when the search runs one fit per job (see
        ``vectorized_``); stacked training ignores it.
    refit : bool, str or callable, default=True
        Refit the best candidate on the whole data set.
    cv : int, cross-validation generator or iterable, default=None
        Splitting strategy.
    verbose : int, default=0
        Verbosity of the members' training.
    pre_dispatch : int or str, default='2*n_jobs'
        Ignored.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling of candidates.
    error_score : 'raise' or numeric, default=np.nan
        Score given to fits that fail.
    return_train_score : bool, default=False
        Also score each fit on its training rows.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        Per-candidate results, as in RandomizedSearchCV.
    best_estimator_ : estimator
        The refitted best candidate (when ``refit``).
    best_score_ : float
        Mean cross-validated score of the best candidate.
    best_params_ : dict
        Parameters of the best candidate.
    best_index_ : int
        Index of the best candidate in ``cv_results_``.
    scorer_ : callable or dict
        The scorer(s) used.
    n_splits_ : int
        Number of cross-validation splits.
    refit_time_ : float
        Seconds spent refitting the best candidate.
    multimetric_ : bool
        Whether several metrics were evaluated.
    vectorized_ : bool
        Whether the fits were trained as stacks. False on the CPU when the
        network is too large for stacking to pay, or when ``fit`` got
        parameters the stacked run cannot honour (see ``fit``); the search
        then ran exactly as scikit-learn's does.

    See Also
    --------
    VectorizedGridSearchCV : Exhaustive grid search, vectorised.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> from sknn_large.model_selection import VectorizedRandomizedSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = VectorizedRandomizedSearchCV(
    ...     LargeMLPClassifier((16,), max_iter=50, device="cpu", random_state=0),
    ...     {"learning_rate_init": loguniform(1e-4, 1e-1)},
    ...     n_iter=4, cv=3, random_state=0,
    ... ).fit(X, y)
    >>> len(search.cv_results_["params"])
    4
    """

    def _candidates(self):
        return ParameterSampler(
            self.param_distributions, self.n_iter, random_state=self.random_state
        )
