"""Hyper-parameter search that trains every (candidate, fold) pair at once.

:class:`VectorizedGridSearchCV` and :class:`VectorizedRandomizedSearchCV` take
the arguments of scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
and :class:`~sklearn.model_selection.RandomizedSearchCV` and fill the same
fitted attributes. Instead of fitting one model per job, they stack all fits
that share an architecture into one vectorised training run (see
``docs/vectorized.rst``) and score each member with scikit-learn's scorers.

Fit parameters follow GridSearchCV: per-sample arrays (``sample_weight``) are
split with the folds, ``groups`` goes to the splitter, ``step__param`` keys
reach a pipeline's steps, and with metadata routing enabled
:func:`~sklearn.utils.metadata_routing.process_routing` decides, as it does for
GridSearchCV. Parameters the stacked run cannot honour make the search run as
scikit-learn's own, one fit per job.
"""

from ._search import VectorizedGridSearchCV, VectorizedRandomizedSearchCV

__all__ = ["VectorizedGridSearchCV", "VectorizedRandomizedSearchCV"]
