"""Moved to :mod:`bk_notebook.server.engines.weights` and :mod:`~bk_notebook.server.engines.decoder`.

Kept so that imports written against the old layout go on working.
"""

from __future__ import annotations

from .engines.decoder import Decoder, SharedModel, shared_model
from .engines.weights import MODELS, ModelFiles, cache_dir, clear_cache, model_folder, whisper_available

__all__ = [
    "MODELS", "Decoder", "ModelFiles", "SharedModel", "cache_dir", "clear_cache", "model_folder", "shared_model",
    "whisper_available",
]
