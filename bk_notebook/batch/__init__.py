"""Many recordings at once.

The run (``run``), its checkpoint (``checkpoint``), the inputs it takes
(``inputs``), scale-out on Dask (``cluster``) and WER scoring (``scoring``).
"""

from __future__ import annotations

from .run import CANCEL_GRACE, current_item, transcribe_many

__all__ = ["CANCEL_GRACE", "current_item", "transcribe_many"]
