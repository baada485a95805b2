"""Model files that are safe to share: weights in safetensors, the rest in JSON.

A model file is one `safetensors <https://github.com/huggingface/safetensors>`_
file, readable by any safetensors tool. Its tensors are the network's weights
(``module.*``) and the training state (``state.*``: optimizer moments, random
number generator states, best weights, arrays of two or more dimensions), so
a loaded model predicts exactly as the saved one did and ``partial_fit`` /
``warm_start`` carry on where it stopped.

A composite (an ensemble of networks, a tabular model with its preprocessor)
is stored the same way, plus one *record* per member: the member's class,
parameters and fitted attributes, as a file of its own would hold them, with
its tensors under the prefix of the attribute that holds it
(``estimators_.3.module.0.weight``, ``preprocessor_.quantile_transformer_.state.0``).
Members nest: a tabular model's ensemble is a member whose networks are its
members. Its ``__metadata__`` holds four strings:

``format``
    Always ``"sknn_large"``.
``format_version``
    An integer; a file newer than this library reads is refused, not guessed at.
``payload``
    JSON: the estimator's class, its parameters, its fitted attributes, the
    records of its members (``members``) and the versions of the libraries
    that wrote it.
``sha256``
    A digest of the payload and of every tensor's name, dtype, shape and bytes,
    so that a flipped or cut byte is found before anything is rebuilt.

Loading parses the file with the safetensors library and JSON only. Nothing in
a file is unpickled, imported or executed: the JSON decoder rebuilds a fixed
list of plain types, the estimator class comes from a fixed registry (a
member's from the attribute that holds it), and each network is rebuilt by the
library's own builder and checked, tensor by tensor, against the weights
found. A composite's members are checked against it: how many fit makes, the
parameters it hands them, the attributes it derives from them. Every problem
with a file's contents raises :class:`ModelFileError`; a model is returned
only after it has predicted.

What a file can make ``load`` do is bounded by the file itself:

- only regular files are opened (a FIFO would block, ``/dev/zero`` never
  ends), and the header is read and checked (format, version, a tensor table
  that exactly tiles the rest of the file) before the body is read;
- which fitted attributes and members exist, and the JSON form of each, come
  from the estimator's schema (a ``_schema.Kind``), not from the file; a
  record sees only its own tensors;
- everything decoding allocates beyond the parsed JSON is charged against
  ``_codec._ALLOCATION_FACTOR`` times the file's size (one budget for all
  the records of a file), before it is allocated, and a string dtype may not
  be wider than its longest value;
- parameters that name paths of the machine that wrote the file
  (``checkpoint``) are neither written nor restored.

The digest is a checksum, not a signature: anyone who edits a file can
recompute it. It finds damage; the checks above are what make a crafted
file harmless.

Persistence reaches an estimator only through its model-file protocol:
saving stores what ``__sknn_state__()`` returns; loading checks the decoded
attributes as a plain dict, rebuilds the network from them, and hands them to
``__sknn_restore__``, which checks them against the parameters (its
ValueError becomes a :class:`ModelFileError`). A class without the pair (the
ensembles, the tabular models, their preprocessor, scikit-learn's
``QuantileTransformer``) keeps its fitted state in its ``__dict__``: what its
kind lists is stored from there and set there, after the checks. Saving
refuses an estimator with a fitted attribute its kind does not know, rather
than write a file whose model could not predict. The modules: ``_format``
(header, body, digest), ``_codec`` (the JSON encoder and decoder),
``_schema`` (``Kind``, the networks' attributes and the checks of their
values), ``_composite`` (the kinds built of members, and the registry),
``_save`` and ``_restore``.
"""

from ._errors import ModelFileError
from ._format import FORMAT, FORMAT_VERSION, _digest
from ._restore import from_bytes, load
from ._save import save, to_bytes

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "_digest",
    "from_bytes",
    "load",
    "save",
    "to_bytes",
]
