"""The Triton runtime: specs served by NVIDIA Triton Inference Server.

``client``
    :class:`~dp_models.triton.client.TritonClient`: one spec at one endpoint (one URL, or
    several replicas), each replica checked before it answers (ready, metadata, served
    digest), failing over between replicas when one is unavailable; what
    ``ModelHandle.client()`` builds.
``checks``
    The client's checks as pure functions over plain data: served metadata against the
    spec, inputs against the spec, the served digest against the expected digest.
``transport``
    The :class:`~dp_models.triton.transport.Transport` protocol the client talks through,
    and the default one over ``tritonclient.http`` (with system shared memory for a server
    on this host).
``shm``
    The shared-memory segments and regions of that transport, and their cleanup (on
    ``close()``, garbage collection and interpreter exit).
``health``
    :func:`~dp_models.triton.health.check_deployments`: many deployments checked at once,
    one :class:`~dp_models._health.HealthReport` each (``dp-models doctor``,
    ``ModelManager.check``).
``whisper``
    Token ids to text with the tokenizer the spec requires.
``repository``
    :func:`~dp_models.triton.repository.export_repository` writes a Triton model
    repository (``config.pbtxt`` with the served weights digest, versioned folders with
    the verified artifacts) for the catalog's Triton specs; ``dp-models triton export``
    is its command line.

Nothing here imports the manager, and nothing imports ``tritonclient`` at import time;
``import dp_models`` does not import this package.
"""

from __future__ import annotations

__all__ = ["checks", "client", "health", "repository", "shm", "transport", "whisper"]
