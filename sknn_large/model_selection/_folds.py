"""Folds, pipelines and fit parameters of a vectorised search.

The preparation a search does before training: splitting a pipeline into its
preprocessing and its final sknn_large estimator, fitting the preprocessing per
fold, splitting per-sample fit parameters with the folds, and assembling each
fitted member back into its pipeline.
"""

from __future__ import annotations

import traceback

import numpy as np
from sklearn import get_config
from sklearn.base import clone
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.metadata_routing import process_routing
from sklearn.utils.validation import _check_method_params


def _split_params(estimator, params: dict) -> tuple[dict, dict]:
    """(preprocessing parameters, final-estimator parameters) of a candidate."""
    if not isinstance(estimator, Pipeline):
        return {}, dict(params)
    name = estimator.steps[-1][0]
    prefix = name + "__"
    final = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    rest = {k: v for k, v in params.items() if not k.startswith(prefix)}
    if name in rest:
        raise ValueError(
            f"Searching over the final step {name!r} itself is not supported; "
            "search its parameters instead."
        )
    return rest, final


def _final_estimator(estimator, pre_params: dict):
    if isinstance(estimator, Pipeline):
        return clone(estimator).set_params(**pre_params).steps[-1][1]
    return estimator


class _Fold:
    """One fold's training and test rows."""

    def __init__(self, index: int, train: np.ndarray, test: np.ndarray):
        self.index, self.train, self.test = index, train, test


def _routing_enabled() -> bool:
    return bool(get_config().get("enable_metadata_routing", False))


def _preprocessing(pipeline: Pipeline) -> Pipeline:
    """A fresh pipeline of ``pipeline``'s preprocessing steps.

    The final step becomes ``'passthrough'`` under its own name rather than
    being dropped: every preprocessing step then stays a non-final step, so
    metadata routing sends it what ``pipeline.fit`` would send it.
    """
    steps = clone(pipeline).steps
    return Pipeline([*steps[:-1], (steps[-1][0], "passthrough")])


def _step_fit_params(estimator, fit_params: dict) -> tuple[dict, dict]:
    """(preprocessing, final-step) fit parameters, routed as ``Pipeline.fit`` would.

    Without metadata routing, ``final__param`` keys go to the final step and
    the rest to the preprocessing (which routes ``step__param`` itself). With
    routing, :func:`process_routing` gives the final step its parameters and
    the preprocessing gets those its steps consume, which it routes again.
    """
    if not isinstance(estimator, Pipeline):
        return {}, dict(fit_params)
    name = estimator.steps[-1][0]
    if not _routing_enabled():
        prefix = name + "__"
        own = {
            k[len(prefix) :]: v for k, v in fit_params.items() if k.startswith(prefix)
        }
        rest = {k: v for k, v in fit_params.items() if not k.startswith(prefix)}
        return rest, own
    routed = process_routing(estimator, "fit", **fit_params)
    consumed = (
        _preprocessing(estimator)
        .get_metadata_routing()
        .consumes("fit_transform", fit_params)
    )
    return {k: fit_params[k] for k in consumed}, dict(routed[name].fit)


class _Training:
    """The rows every member of one preprocessing setting trains on.

    ``X``, ``y`` and ``sample_weight`` are shared by all members; ``rows[f]``
    indexes fold ``f``'s training rows in them. ``prefixes[f]`` holds fold
    ``f``'s fitted preprocessing (None for a bare estimator) and ``errors[f]``
    the exception that fitting it raised, if any.
    """

    def __init__(self, X, y, sample_weight, rows, prefixes, errors):
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.rows, self.prefixes, self.errors = rows, prefixes, errors


def _transformed_folds(estimator, pre_params: dict, X, y, folds, fit_params):
    """Fit a pipeline's preprocessing on each fold; stack the training rows.

    A bare estimator trains on ``X`` itself, each fold by its row indices.
    For a pipeline, each fold's transformed training rows are stacked, with
    their targets and the final step's sample weights in the same order.
    """
    if not isinstance(estimator, Pipeline):
        sw = _step_fit_params(estimator, fit_params)[1].get("sample_weight")
        sw = None if sw is None else np.asarray(sw)
        n = len(folds)
        return _Training(X, y, sw, [f.train for f in folds], [None] * n, [None] * n)
    pipeline = clone(estimator).set_params(**pre_params)
    blocks, targets, weights, rows, prefixes, errors = [], [], [], [], [], []
    offset = 0
    for f in folds:
        # Per-sample parameters follow the fold's rows, as in _fit_and_score.
        fold_params = _check_method_params(X, params=fit_params, indices=f.train)
        y_train = _safe_indexing(y, f.train)
        pre = _preprocessing(pipeline)
        try:
            pre_fit, own = _step_fit_params(pipeline, fold_params)
            block = np.asarray(
                pre.fit_transform(_safe_indexing(X, f.train), y_train, **pre_fit)
            )
        except Exception as exc:  # fails this fold's jobs, as in GridSearchCV
            rows.append(None)
            prefixes.append(None)
            errors.append(exc)
            continue
        blocks.append(block)
        targets.append(y_train)
        weights.append(own.get("sample_weight"))
        rows.append(np.arange(offset, offset + len(f.train)))
        prefixes.append(Pipeline(pre.steps[:-1]))
        errors.append(None)
        offset += len(f.train)
    if not blocks:
        return _Training(None, None, None, rows, prefixes, errors)
    sw = None
    if weights[0] is not None:
        sw = np.concatenate([np.asarray(w) for w in weights])
    return _Training(
        np.vstack(blocks), np.concatenate(targets), sw, rows, prefixes, errors
    )


def _assemble(estimator, params: dict, prefix, fitted):
    """The fitted model of one job: the member, or a pipeline around it."""
    if prefix is None:
        return fitted
    model = clone(estimator).set_params(**params)
    model.steps = [*prefix.steps, (model.steps[-1][0], fitted)]
    return model


def _failed(exc: BaseException, scorer, error_score, train: bool) -> dict:
    if error_score == "raise":
        raise exc
    score = error_score
    if isinstance(scorer, _MultimetricScorer):
        score = {name: error_score for name in scorer._scorers}
    out = {"fit_error": "".join(traceback.format_exception(exc)), "test_scores": score}
    if train:
        out["train_scores"] = score.copy() if isinstance(score, dict) else score
    return out


# ------------------------------------------------------------------ search
