"""Training checkpoints: atomic writes, integrity checks and exact resumption.

A checkpoint holds everything the next epoch depends on: the weights, the
optimizer's state, the shuffling and dropout generators, the stopping-rule
counters and curves, and the random state the fit started from (which fixes
the initial weights and the early-stopping split). It is written with
:func:`torch.save` to a temporary file in the same folder, flushed to disk and
moved over the old one with :func:`os.replace`, so a crash mid-write leaves the
previous checkpoint intact; a temporary left by a killed writer is removed by
the next write (see :mod:`sknn_large._io`).

It is read with ``torch.load(weights_only=True)``, torch's restricted loader
that only rebuilds tensors and plain containers, from regular files only. What
was read is then checked before anything is resumed:

- a SHA-256 digest over every value (each tensor's dtype, shape and bytes)
  finds damage: one flipped byte in a weight is enough to refuse the file;
- its structure and every field's type and size are checked, and the weights,
  best weights, optimizer moments and random number generator states must fit
  the network being trained;
- its fingerprint (see :func:`fingerprint`) must be that of this fit: the same
  parameters and the same data.

A checkpoint that fails any of these raises :class:`CheckpointError`, naming
the file; it is left in place, never resumed and never silently replaced.
Deleting it starts the fit afresh.

The modules: ``_file`` (writing, the digest, reading, restoring),
``_validate`` (the checks of what was read, random states) and
``_fingerprint`` (what identifies a fit).
"""

from ._file import (
    FORMAT,
    digest,
    load_for_resume,
    make_payload,
    read,
    restore_state,
    write_atomic,
)
from ._fingerprint import FREE_PARAMS, fingerprint
from ._validate import CheckpointError, rng_from_payload, rng_to_payload

__all__ = [
    "FORMAT",
    "FREE_PARAMS",
    "CheckpointError",
    "digest",
    "fingerprint",
    "load_for_resume",
    "make_payload",
    "read",
    "restore_state",
    "rng_from_payload",
    "rng_to_payload",
    "write_atomic",
]
