"""The Triton runtime: specs served by NVIDIA Triton Inference Server.

``repository``
    :func:`~dp_models.triton.repository.export_repository` writes a Triton model
    repository (``config.pbtxt`` with the served weights digest, versioned folders with
    the verified artifacts) for the catalog's Triton specs; ``dp-models triton export``
    is its command line.

Nothing here imports ``tritonclient`` at import time; ``import dp_models`` does not
import this package.
"""

from __future__ import annotations
