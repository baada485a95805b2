"""Sphinx configuration of the sknn_large documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The example gallery executes ``examples/plot_*.py``; add
``-D plot_gallery=0`` to skip running them.
"""

import os
from pathlib import Path

# The examples train tiny networks: intra-op threads only add overhead, and on
# a busy machine OpenMP's spinning workers slow them down many times. Setting
# OMP_NUM_THREADS before running the build overrides this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import sknn_large  # noqa: E402

# Applies even when torch was imported before this file ran.
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DOCS = Path(__file__).resolve().parent

project = "sknn_large"
author = "The sknn_large developers"
copyright = "the sknn_large developers"
release = sknn_large.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"sknn_large {release}"
html_theme_options = {"description": "scikit-learn's MLPs, trained with PyTorch"}

autosummary_generate = False
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "backreferences_dir": "gen_modules/backreferences",
    "write_computation_times": False,
    "doc_module": ("sknn_large",),
    "abort_on_example_error": True,
    "download_all_examples": False,
    "matplotlib_animations": False,
}

# ---------------------------------------------------------------- API page
# The API reference lists what ``import sknn_large`` exports at build time, so
# names added by other modules (persistence, export, scale-out) appear as soon
# as ``sknn_large/__init__.py`` exports them, and nothing breaks before. Each
# name is documented in full on the API page itself (no generated stub files).
_API_SECTIONS = [
    ("Estimators", ["LargeMLPClassifier", "LargeMLPRegressor"]),
    ("Plotting", ["TrainingCurveDisplay"]),
    ("Saving, loading and export", ["save", "load", "to_onnx", "ModelFileError"]),
]
_API_MARKER = ".. API sections are generated here by conf.py\n"


def _document(name: str) -> str:
    directive = (
        "autoclass" if isinstance(getattr(sknn_large, name), type) else "autofunction"
    )
    return (
        f"{name}\n{'~' * len(name)}\n\n"
        f".. {directive}:: {name}\n\n"
        f".. minigallery:: sknn_large.{name}\n"
        f"   :add-heading: Examples using ``{name}``\n"
        "   :heading-level: ^\n\n"
    )


def api_sections() -> str:
    """reStructuredText documenting every public name ``sknn_large`` exports."""
    exported = [n for n in getattr(sknn_large, "__all__", []) if n != "__version__"]
    exported = [n for n in exported if hasattr(sknn_large, n)]
    listed = set()
    text = ""
    for title, names in [*_API_SECTIONS, ("Other", exported)]:
        names = [n for n in names if n in exported and n not in listed]
        if not names:
            continue
        listed.update(names)
        table = "".join(f"   {n}\n" for n in names)
        text += f"{title}\n{'-' * len(title)}\n\n.. autosummary::\n\n{table}\n"
        text += "".join(_document(n) for n in names)
    return text


# ---------------------------------------------------------------- user guide
# Pages written alongside this guide (persistence, scale-out, performance...)
# join the user guide's table of contents when their file exists.
_OWN_PAGES = {
    "index",
    "api",
    "getting_started",
    "migrating",
    "workflow",
    "regularisation",
    "gpu",
    "reproducibility",
}
_PREFERRED_ORDER = ["performance", "persistence", "scaling_out"]
_PAGES_MARKER = "   .. other pages are listed here by conf.py\n"


def other_pages() -> list[str]:
    """Top-level pages of docs/ that this guide did not write, in a fixed order."""
    found = {p.stem for p in DOCS.glob("*.rst")} - _OWN_PAGES
    found.discard("sg_execution_times")  # sphinx-gallery's, when enabled
    first = [p for p in _PREFERRED_ORDER if p in found]
    return first + sorted(found - set(first))


def _fill_markers(app, docname, source):
    if docname == "index":
        pages = "".join(f"   {p}\n" for p in other_pages())
        source[0] = source[0].replace(_PAGES_MARKER, pages)
    elif docname == "api":
        source[0] = source[0].replace(_API_MARKER, api_sections())


# --------------------------------------------------------- docstring fixes


def _skip_request_methods(app, what, name, obj, skip, options):
    # scikit-learn attaches ``set_{fit,score,...}_request`` to every estimator;
    # they belong to its metadata-routing API and cite its own glossary.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _quote_shape_names(app, what, name, obj, options, lines):
    # ``(n_features_in_,)`` in a type line reads as a reST link target; quote
    # it as scikit-learn's docstrings do. No-op once the docstrings quote it.
    for i, line in enumerate(lines):
        lines[i] = line.replace("(n_features_in_,)", "(`n_features_in_`,)")


def setup(app):
    app.connect("source-read", _fill_markers)
    app.connect("autodoc-skip-member", _skip_request_methods)
    app.connect("autodoc-process-docstring", _quote_shape_names)
