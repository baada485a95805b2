"""The kinds of estimators built of members, and the registry of every kind.

A composite (an ensemble, a tabular model, its preprocessor) is stored as its
parameters and plain fitted attributes, like a network, plus one record per
member in ``members`` (see :class:`~._schema.Slot`). The checks here hold the
rebuilt members against the composite: how many there are, the parameters
they share with it, and the attributes fit derives from them (classes,
widths, epochs). The members' own checks have run by then.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import QuantileTransformer

from .._classifier import LargeMLPClassifier
from .._regressor import LargeMLPRegressor
from ..ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor
from ..tabular import TabularMLPClassifier, TabularMLPRegressor, TabularPreprocessor
from ._errors import ModelFileError
from ._schema import (
    _ARRAY_KINDS,
    _INT_FORMS,
    NETWORK_KINDS,
    Kind,
    Slot,
    _is_count,
    _is_int,
    _is_names,
)

_ARRAY = frozenset({"__ndarray__"})
_COMMON_FORMS = {
    "n_features_in_": _INT_FORMS,
    "feature_names_in_": _ARRAY,
}
_COMMON_KINDS = {"feature_names_in_": "OU"}


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ModelFileError(
            f"The model file is inconsistent in its {what}: fit could not have"
            " made them."
        )


def _is_array(value, kind: str, ndim: int = 1) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype.kind in kind
        and value.ndim == ndim
    )


def _is_float64(value, shape) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.float64
        and value.shape == shape
        and bool(np.isfinite(value).all())
    )


def _check_inputs(est, attributes: dict) -> int:
    """``n_features_in_`` and ``feature_names_in_``, as ``validate_data`` sets."""
    n = attributes["n_features_in_"]
    names = attributes.get("feature_names_in_")
    _require(
        _is_count(n) and (names is None or (_is_names(names) and names.shape == (n,))),
        "input width or feature names",
    )
    return n


def _same_array(a, b) -> bool:
    return (
        isinstance(a, np.ndarray)
        and a.dtype == b.dtype
        and a.shape == b.shape
        and bool(np.array_equal(a, b))
    )


# ---------------------------------------------------------------- ensembles


def _check_ensemble(est, attributes: dict, tensors) -> None:
    members = attributes["estimators_"]
    n = _check_inputs(est, attributes)
    _require(
        all(
            m.n_features_in_ == n
            and not hasattr(m, "feature_names_in_")  # members see arrays
            and _is_int(m.random_state)  # a seed drawn from the ensemble's
            for m in members
        )
        and attributes["n_iter_"] == max(m.n_iter_ for m in members),
        "ensemble members",
    )
    if "classes_" not in attributes:
        _require(len({m.n_outputs_ for m in members}) == 1, "members' outputs")
        return
    classes, multilabel = attributes["classes_"], attributes["multilabel_"]
    _require(
        isinstance(multilabel, bool)
        and all(
            _same_array(classes, m.classes_)
            and multilabel == (m.out_activation_ == "logistic" and m.n_outputs_ > 1)
            for m in members
        ),
        "classes",
    )
    attributes["classes_"] = members[0].classes_  # one object, as after fit


def _ensemble_kind(cls, member: type, classifier: bool) -> Kind:
    forms = {**_COMMON_FORMS, "n_iter_": _INT_FORMS}
    required = {"n_features_in_", "n_iter_"}
    if classifier:
        forms.update(classes_=_ARRAY, multilabel_=frozenset({"bool"}))
        required |= {"classes_", "multilabel_"}
    return Kind(
        cls=cls,
        forms=forms,
        required=frozenset(required),
        check=_check_ensemble,
        kinds={**_COMMON_KINDS, "classes_": _ARRAY_KINDS},
        slots={
            "estimators_": Slot(
                member,
                many=True,
                count=lambda est: est.n_estimators,
                derived=frozenset({"random_state"}),
            )
        },
    )


# ------------------------------------------------------ quantile transformer


def _check_quantiles(est, attributes: dict, tensors) -> None:
    # As QuantileTransformer.fit leaves them: one knot per row of quantiles_,
    # each column non-decreasing, the references evenly spaced on [0, 1].
    n = attributes["n_quantiles_"]
    width = _check_inputs(est, attributes)
    quantiles, references = attributes["quantiles_"], attributes["references_"]
    _require(
        _is_count(n)
        and n <= est.n_quantiles
        and _is_float64(quantiles, (n, width))
        and bool((np.diff(quantiles, axis=0) >= 0).all())
        and _is_float64(references, (n,))
        and bool(np.array_equal(references, np.linspace(0, 1, n, endpoint=True))),
        "quantile table",
    )


_QUANTILE_KIND = Kind(
    cls=QuantileTransformer,
    forms={
        **_COMMON_FORMS,
        "n_quantiles_": _INT_FORMS,
        "quantiles_": _ARRAY,
        "references_": _ARRAY,
    },
    required=frozenset({"n_features_in_", "n_quantiles_", "quantiles_", "references_"}),
    check=_check_quantiles,
    kinds={**_COMMON_KINDS, "quantiles_": "f", "references_": "f"},
)


# ----------------------------------------------------------- preprocessor


def _check_preprocessor(est, a: dict, tensors) -> None:
    n = _check_inputs(est, a)
    num, cat = a["numeric_features_"], a["categorical_features_"]
    _require(
        _is_array(num, "i")
        and _is_array(cat, "i")
        and bool(np.array_equal(np.sort(np.r_[num, cat]), np.arange(n)))
        and bool((np.diff(num) > 0).all() and (np.diff(cat) > 0).all()),
        "column kinds",
    )
    _check_numeric(est, a, num)
    widths = _check_categories(est, a, cat)
    bins = sum(max(e.size - 1, 0) for e in a["bin_edges_"])
    n_out = len(num) + bins + len(a["indicator_features_"]) + sum(widths)
    n_codes = len(a["ordinal_features_"])
    _require(
        _is_array(a["embedding_columns_"], "i")
        and bool(
            np.array_equal(a["embedding_columns_"], np.arange(n_out - n_codes, n_out))
        ),
        "embedding columns",
    )


def _check_numeric(est, a: dict, num: np.ndarray) -> None:
    mask, quantile = a["_indicator_mask"], a["quantile_transformer_"]
    indicators = a["indicator_features_"]
    _require(
        _is_float64(a["center_"], num.shape)
        and _is_float64(a["scale_"], num.shape)
        and bool((a["scale_"] > 0).all())
        and _is_array(indicators, "i")
        and (
            _is_array(mask, "b") and mask.shape == num.shape
            if est.add_indicator
            else mask is None
        )
        and bool(
            np.array_equal(indicators, num[mask] if est.add_indicator else num[:0])
        ),
        "numeric columns",
    )
    _check_bins(est, a, num)
    # The quantile map exists exactly when fit makes one, for these columns.
    wanted = est.numeric_transform == "quantile" and num.size > 0
    _require(
        (quantile is not None) == wanted
        and (
            quantile is None
            or (
                quantile.n_features_in_ == num.size
                and not hasattr(quantile, "feature_names_in_")
            )
        ),
        "quantile transform",
    )


def _check_bins(est, a: dict, num: np.ndarray) -> None:
    # Piecewise-linear bins, where the preprocessor has them: for each numeric
    # column none, or at least three increasing edges (two bins), at most
    # numeric_bins + 1.
    edges, bins = a["bin_edges_"], est.numeric_bins
    _require(
        isinstance(edges, list)
        and len(edges) == num.size
        and all(
            _is_array(e, "f")
            and e.dtype == np.float64
            and bool(np.isfinite(e).all())
            and (
                e.size == 0
                or (
                    bins is not None
                    and 3 <= e.size <= bins + 1
                    and bool((np.diff(e) > 0).all())
                )
            )
            for e in edges
        ),
        "numeric bins",
    )


def _check_categories(est, a: dict, cat: np.ndarray) -> list[int]:
    """Each column's categories, as fit found them; its one-hot widths."""
    known, missing, categories = a["_known"], a["_has_missing"], a["categories_"]
    _require(
        all(isinstance(v, list) and len(v) == cat.size for v in (known, missing))
        and isinstance(categories, list)
        and len(categories) == cat.size
        and all(
            _categories_fit(*c) for c in zip(known, missing, categories, strict=True)
        ),
        "categories",
    )
    sizes = np.array(
        [len(k) + m for k, m in zip(known, missing, strict=True)], dtype=int
    )
    onehot = sizes <= est.max_onehot_categories
    _require(
        _same_index(a["onehot_features_"], cat[onehot])
        and _same_index(a["ordinal_features_"], cat[~onehot])
        # + the unknown code 0
        and _same_index(a["embedding_cardinalities_"], sizes[~onehot] + 1),
        "category encoding",
    )
    # A two-category column is one -1/+1 column; codes take one column each.
    return [
        (1 if s == 2 else int(s)) if o else 1
        for s, o in zip(sizes, onehot, strict=True)
    ]


def _same_index(value, expected: np.ndarray) -> bool:
    return _is_array(value, "i") and bool(np.array_equal(value, expected))


def _categories_fit(known, has_missing, categories) -> bool:
    # Known categories: distinct values, none missing; categories_ repeats
    # them, with NaN last when missing values were seen.
    if not (
        _is_array(known, "O")
        and _is_array(categories, "O")
        and isinstance(has_missing, bool)
        and len(categories) == len(known) + has_missing
        and not pd.isna(known).any()
        and pd.Index(known, dtype=object).is_unique
    ):
        return False
    same = all(
        type(x) is type(y) and x == y for x, y in zip(known, categories, strict=False)
    )
    last = categories[-1] if has_missing else None
    return same and (not has_missing or (isinstance(last, float) and np.isnan(last)))


_INDEX_NAMES = (
    "numeric_features_",
    "categorical_features_",
    "indicator_features_",
    "onehot_features_",
    "ordinal_features_",
    "embedding_cardinalities_",
    "embedding_columns_",
)
_PREPROCESSOR_KIND = Kind(
    cls=TabularPreprocessor,
    forms={
        **_COMMON_FORMS,
        **dict.fromkeys(_INDEX_NAMES, _ARRAY),
        "center_": _ARRAY,
        "scale_": _ARRAY,
        "_indicator_mask": frozenset({"__ndarray__", "NoneType"}),
        "categories_": frozenset({"list"}),
        "_known": frozenset({"list"}),
        "_has_missing": frozenset({"list"}),
        "bin_edges_": frozenset({"list"}),
    },
    required=frozenset(
        {
            "n_features_in_",
            *_INDEX_NAMES,
            "center_",
            "scale_",
            "_indicator_mask",
            "categories_",
            "_known",
            "_has_missing",
            "bin_edges_",
        }
    ),
    check=_check_preprocessor,
    kinds={
        **_COMMON_KINDS,
        **dict.fromkeys(_INDEX_NAMES, "i"),
        "center_": "f",
        "scale_": "f",
        "_indicator_mask": "b",
        "categories_": "O",  # fit keeps categories as objects, whatever they are
        "_known": "O",
        "_has_missing": "",  # plain booleans
        "bin_edges_": "f",
    },
    slots={"quantile_transformer_": Slot(QuantileTransformer, optional=True)},
)


# ---------------------------------------------------------- tabular models


def _check_tabular(est, a: dict, tensors) -> None:
    pre, ensemble = a["preprocessor_"], a["ensemble_"]
    n = _check_inputs(est, a)
    names = a.get("feature_names_in_")
    pre_names = getattr(pre, "feature_names_in_", None)
    _require(
        pre.n_features_in_ == n
        and (names is None) == (pre_names is None)
        and (names is None or bool(np.array_equal(names, pre_names)))
        and not hasattr(ensemble, "feature_names_in_")
        and ensemble.n_features_in_ == len(pre.get_feature_names_out())
        and a["n_iter_"] == ensemble.n_iter_,
        "preprocessing or ensemble",
    )
    if "classes_" in a:
        _require(
            _same_array(a["classes_"], ensemble.classes_) and not ensemble.multilabel_,
            "classes",
        )
        a["classes_"] = ensemble.classes_  # one object, as after fit
        return
    shape = (ensemble.estimators_[0].n_outputs_,)
    _require(
        _is_float64(a["target_mean_"], shape)
        and _is_float64(a["target_scale_"], shape)
        and bool((a["target_scale_"] > 0).all()),
        "target scaling",
    )


def _tabular_kind(cls, ensemble: type, classifier: bool) -> Kind:
    forms = {**_COMMON_FORMS, "n_iter_": _INT_FORMS}
    kinds = dict(_COMMON_KINDS)
    if classifier:
        forms["classes_"], kinds["classes_"] = _ARRAY, _ARRAY_KINDS
        extra = {"classes_"}
    else:
        extra = {"target_mean_", "target_scale_"}
        forms.update(dict.fromkeys(extra, _ARRAY))
        kinds.update(dict.fromkeys(extra, "f"))
    return Kind(
        cls=cls,
        forms=forms,
        required=frozenset({"n_features_in_", "n_iter_", *extra}),
        check=_check_tabular,
        kinds=kinds,
        slots={
            "preprocessor_": Slot(TabularPreprocessor),
            # fit picks the batch size from the rows it trains on.
            "ensemble_": Slot(ensemble, derived=frozenset({"batch_size"})),
        },
    )


_ENSEMBLE_CLASSIFIER = _ensemble_kind(
    LargeMLPEnsembleClassifier, LargeMLPClassifier, classifier=True
)
_ENSEMBLE_REGRESSOR = _ensemble_kind(
    LargeMLPEnsembleRegressor, LargeMLPRegressor, classifier=False
)
# The classes a file can name, and the kind of each; nothing is imported by
# name from a file. A member's class comes from its slot, not from here.
KINDS = {
    kind.cls.__name__: kind
    for kind in (
        *NETWORK_KINDS.values(),
        _ENSEMBLE_CLASSIFIER,
        _ENSEMBLE_REGRESSOR,
        _tabular_kind(TabularMLPClassifier, LargeMLPEnsembleClassifier, True),
        _tabular_kind(TabularMLPRegressor, LargeMLPEnsembleRegressor, False),
        _PREPROCESSOR_KIND,
        _QUANTILE_KIND,
    )
}
# The classes save writes and load returns, at the top of a file.
_ESTIMATORS = {
    name: KINDS[name].cls
    for name in (
        "LargeMLPClassifier",
        "LargeMLPRegressor",
        "LargeMLPEnsembleClassifier",
        "LargeMLPEnsembleRegressor",
        "TabularMLPClassifier",
        "TabularMLPRegressor",
    )
}
