"""The data feed layer: pure torch/numpy, no scikit-learn imports."""

from ._feeds import (
    ResidentFeed,
    SharedFeed,
    StackFeed,
    StreamFeed,
    iter_row_blocks,
    make_feed,
    take_rows,
)
from ._sources import (
    RowView,
    as_tensor,
    free_device_bytes,
    is_in_memory,
    is_memory_mapped,
    is_row_source,
    iter_host_blocks,
    release_rows,
    rows_for_bytes,
    rows_to_tensor,
    stream_rows,
    streams_from_source,
)

__all__ = [
    "ResidentFeed",
    "RowView",
    "SharedFeed",
    "StackFeed",
    "StreamFeed",
    "as_tensor",
    "free_device_bytes",
    "is_in_memory",
    "is_memory_mapped",
    "is_row_source",
    "iter_host_blocks",
    "iter_row_blocks",
    "make_feed",
    "release_rows",
    "rows_for_bytes",
    "rows_to_tensor",
    "stream_rows",
    "streams_from_source",
    "take_rows",
]
