"""TabularPreprocessor: mixed-type tables in, float32 MLP inputs out."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sknn_large.tabular import TabularPreprocessor

# sklearn's checks that this transformer is known to fail, with the reason:
# none at present (check_array_api_input skips itself without SCIPY_ARRAY_API).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _mixed_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 1, n)
    income[::10] = np.nan
    return pd.DataFrame(
        {
            "income": income,
            "age": rng.integers(18, 90, n),
            "city": pd.Categorical(rng.choice(["Oslo", "Lima", "Pune"], n)),
            "plan": rng.choice(["basic", "pro"], n).astype(object),
            "member": rng.random(n) < 0.3,
            "shop": pd.array(rng.choice([f"s{i}" for i in range(40)], n), "string"),
        }
    )


@parametrize_with_checks(
    [
        TabularPreprocessor(),
        TabularPreprocessor(numeric_transform="quantile", clip=None),
        TabularPreprocessor(max_onehot_categories=0, add_indicator=False),
        TabularPreprocessor(numeric_bins=4),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    # The transformer passes scikit-learn's own API checks in each mode.
    check(estimator)


def test_mixed_dataframe_column_kinds_follow_dtypes():
    # category, object, string and bool columns are categorical; numbers are not.
    X = _mixed_frame()
    pre = TabularPreprocessor().fit(X)
    assert pre.numeric_features_.tolist() == [0, 1]
    assert pre.categorical_features_.tolist() == [2, 3, 4, 5]
    assert pre.onehot_features_.tolist() == [2, 3, 4]
    assert pre.ordinal_features_.tolist() == [5]
    out = pre.transform(X)
    assert out.dtype == np.float32
    assert out.shape == (len(X), len(pre.get_feature_names_out()))
    assert np.isfinite(out).all()


def test_feature_names_out_match_the_columns():
    # Names say what each output column is, in the documented order.
    pre = TabularPreprocessor().fit(_mixed_frame())
    assert pre.get_feature_names_out().tolist() == [
        "income",
        "age",
        "missingindicator_income",
        "city_Lima",
        "city_Oslo",
        "city_Pune",
        "plan_pro",
        "member_True",
        "shop_code",
    ]
    assert pre.embedding_columns_.tolist() == [8]
    assert pre.embedding_cardinalities_.tolist() == [41]


def test_transform_uses_training_statistics_only():
    # No leakage: test rows are scaled with the training rows' median and IQR.
    X = _mixed_frame(300)
    train, test = X.iloc[:200], X.iloc[200:].copy()
    test["income"] *= 100  # a shifted test distribution must not move the scale
    pre = TabularPreprocessor(clip=None).fit(train)
    x = train["income"].dropna().to_numpy()
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    expected = (test["income"].fillna(med) - med) / ((q75 - q25) / 1.349)
    got = pre.transform(test)[:, 0]
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-5)
    # Each row's output depends on that row alone, not on its batch.
    np.testing.assert_array_equal(pre.transform(test.iloc[:5]), pre.transform(test)[:5])


def test_unknown_categories_are_encoded_not_refused():
    # Categories first seen at transform time give zeros (one-hot, +-1) and code 0.
    X = _mixed_frame()
    pre = TabularPreprocessor().fit(X)
    row = X.iloc[:1].copy()
    row["city"] = pd.Categorical(["Rome"])
    row["plan"] = "enterprise"
    row["shop"] = pd.array(["never-seen"], "string")
    out = pre.transform(row)[0]
    names = pre.get_feature_names_out().tolist()
    for name in ("city_Lima", "city_Oslo", "city_Pune", "plan_pro", "shop_code"):
        assert out[names.index(name)] == 0.0, name


def test_missing_numbers_are_imputed_with_an_indicator():
    # NaN becomes the training median (0 after scaling) and sets its indicator;
    # a column without NaN in training gets no indicator, yet NaN there is imputed.
    X = _mixed_frame()
    pre = TabularPreprocessor().fit(X)
    assert pre.indicator_features_.tolist() == [0]
    test = X.iloc[:3].copy()
    test.loc[:, "income"] = np.nan
    test["age"] = test["age"].astype(float)
    test.loc[test.index[0], "age"] = np.nan
    out = pre.transform(test)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    np.testing.assert_array_equal(out[:, 2], 1.0)
    assert out[0, 1] == 0.0
    assert pre.center_[1] == np.median(X["age"])


def test_missing_category_is_a_category_when_seen_in_training():
    # A missing value seen in training gets its own slot; unseen, it is unknown.
    X = pd.DataFrame({"c": ["a", None, "b", "c", "a"], "d": ["x", "y", "z", "x", "y"]})
    pre = TabularPreprocessor().fit(X)
    assert pre.get_feature_names_out().tolist() == [
        "c_a",
        "c_b",
        "c_c",
        "c_nan",
        "d_x",
        "d_y",
        "d_z",
    ]
    out = pre.transform(pd.DataFrame({"c": [None], "d": [None]}))
    np.testing.assert_array_equal(out, [[0, 0, 0, 1, 0, 0, 0]])


def test_zero_spread_columns_fall_back_to_wider_ranges():
    # A mostly-constant column is still scaled to O(1), a constant one to 0.
    x = np.zeros((100, 3))
    x[:10, 0] = 1.0  # IQR 0, 5-95% range 1
    x[:2, 1] = 5.0  # IQR and 5-95% range 0, full range 5
    pre = TabularPreprocessor(clip=None).fit(x)
    np.testing.assert_allclose(pre.scale_, [1 / 3.2897, 2.5, 1.0], rtol=1e-4)
    out = pre.transform(x)
    assert np.abs(out[:, :2]).max() < 4
    np.testing.assert_array_equal(out[:, 2], 0.0)


def test_smooth_clip_bounds_outliers_and_keeps_order():
    # Outliers stay ordered and below the clip scale; small values barely move.
    x = np.r_[np.linspace(-1, 1, 99), 1e6][:, None]
    out = TabularPreprocessor(clip=3.0).fit_transform(x)[:, 0]
    assert np.all(np.diff(out) > 0)
    assert out.max() <= 3.0  # float32 rounds 1e6 / sqrt(1 + ...) to 3
    raw = TabularPreprocessor(clip=None).fit_transform(x)[:, 0]
    small = np.abs(raw) < 0.3
    np.testing.assert_allclose(out[small], raw[small], atol=0.01)


def test_quantile_transform_makes_columns_normal():
    # numeric_transform="quantile" maps a skewed column onto a standard normal.
    x = np.random.default_rng(0).lognormal(0, 2, (5000, 1))
    out = TabularPreprocessor(numeric_transform="quantile", clip=None).fit_transform(x)
    assert abs(out.mean()) < 0.05
    assert abs(out.std() - 1) < 0.05


def test_numeric_array_input_matches_dataframe_input():
    # A plain float array is all-numeric and gives what the same DataFrame gives.
    X = _mixed_frame()[["income", "age"]]
    from_frame = TabularPreprocessor().fit_transform(X)
    from_array = TabularPreprocessor().fit_transform(X.to_numpy(dtype=float))
    np.testing.assert_array_equal(from_frame, from_array)


def test_object_array_columns_holding_text_are_categorical():
    # Without dtypes, an object column is categorical when it holds non-numbers.
    A = np.array([[1.0, "a", None], [2.0, "b", 3.0], [np.nan, None, 4.0]], dtype=object)
    pre = TabularPreprocessor().fit(A)
    assert pre.categorical_features_.tolist() == [1]
    assert pre.indicator_features_.tolist() == [0, 2]


@pytest.mark.parametrize("spec", [["city", "plan"], [2, 3], [False, False, True, True]])
def test_categorical_features_can_be_given_explicitly(spec):
    # Names, indices and masks choose the categorical columns (others numeric).
    X = _mixed_frame().drop(columns=["member", "shop"])
    pre = TabularPreprocessor(categorical_features=spec).fit(X)
    assert pre.categorical_features_.tolist() == [2, 3]


def test_integer_column_named_categorical_gets_categories():
    # An integer-coded id listed in categorical_features is encoded, not scaled.
    X = pd.DataFrame({"id": [3, 7, 3, 9], "v": [0.1, 0.2, 0.3, 0.4]})
    pre = TabularPreprocessor(categorical_features=["id"]).fit(X)
    assert pre.get_feature_names_out().tolist() == ["v", "id_3", "id_7", "id_9"]


def test_invalid_categorical_features_are_refused():
    # A wrong mask length, index or name is an error, not a silent default.
    X = _mixed_frame()
    for spec, match in [
        ([True, False], "boolean mask"),
        ([10], "outside"),
        (["nope"], "unknown columns"),
    ]:
        with pytest.raises(ValueError, match=match):
            TabularPreprocessor(categorical_features=spec).fit(X)


def test_infinite_numbers_are_refused():
    # inf is not a missing value: it is refused rather than clipped silently.
    X = pd.DataFrame({"a": [1.0, np.inf, 2.0], "b": ["x", "y", "x"]})
    with pytest.raises(ValueError, match="infinity"):
        TabularPreprocessor().fit(X)


def test_set_output_pandas_uses_feature_names():
    # set_output(transform="pandas") gives a float32 frame named like the columns.
    X = _mixed_frame()
    pre = TabularPreprocessor().set_output(transform="pandas").fit(X)
    out = pre.transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == pre.get_feature_names_out().tolist()
    assert (out.dtypes == np.float32).all()


def test_pipeline_cross_validation_fits_each_fold():
    # Inside a Pipeline, cross_val_score refits the preprocessing on each fold.
    X = _mixed_frame(300)
    y = (X["city"] == "Oslo") ^ (X["age"] > 50)
    pipe = make_pipeline(
        TabularPreprocessor(max_onehot_categories=64), LogisticRegression()
    )
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_numeric_bins_are_a_piecewise_linear_encoding():
    X = _mixed_frame()
    pre = TabularPreprocessor(numeric_bins=4).fit(X)
    names = pre.get_feature_names_out().tolist()
    Z = pre.transform(X)
    scaled = TabularPreprocessor().fit(X).transform(X)[:, :2]
    for j, col in enumerate(["income", "age"]):
        edges = pre.bin_edges_[j]
        # Quantile edges of the column on its transformed scale, from its
        # smallest to its largest observed value.
        seen = scaled[~np.isnan(X[col].to_numpy(float)), j]
        np.testing.assert_allclose(edges[[0, -1]], [seen.min(), seen.max()], rtol=1e-6)
        bins = Z[:, [names.index(f"{col}_bin{t}") for t in range(edges.size - 1)]]
        x = scaled[:, j : j + 1]
        expected = np.clip((x - edges[:-1]) / np.diff(edges), 0, 1)
        np.testing.assert_allclose(bins, expected, rtol=1e-5, atol=1e-6)
        # Bins wholly below x are 1, those above 0: the code is monotone in x
        # and its sum locates x.
        order = np.argsort(x[:, 0])
        assert np.all(np.diff(bins[order].sum(axis=1)) >= -1e-6)
    # The plain scaled columns are kept in front, unchanged.
    np.testing.assert_allclose(Z[:, :2], scaled, rtol=1e-6)


def test_numeric_bins_skip_columns_of_few_values():
    X = pd.DataFrame({"flag": [0.0, 1.0] * 20, "x": np.arange(40.0)})
    pre = TabularPreprocessor(numeric_bins=8).fit(X)
    assert pre.bin_edges_[0].size == 0
    assert pre.bin_edges_[1].size == 9
    assert pre.transform(X).shape == (40, 2 + 8)
