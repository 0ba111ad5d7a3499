"""A folder of recordings, transcribed at full speed on a Dask cluster: resumable, exactly once.

``plan``    pure: which files are recordings, their keys (content hash + settings), the output folder's layout
``work``    one recording on one worker: the in-process engine (or a v3 server), written atomically
``run``     `batch()`: the recordings that are not done yet, spread over Dask workers, and the tables at the end
"""

from __future__ import annotations

from .plan import BatchSettings
from .run import BatchResult, batch

__all__ = ["BatchResult", "BatchSettings", "batch"]
