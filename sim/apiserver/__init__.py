"""The emulated kube-apiserver: object store, REST/watch/discovery server, auth and aggregation.

``ObjectStore`` (store.py) holds the objects; ``APIServer`` (server.py) serves them over HTTPS.
"""

from __future__ import annotations

from .store import ObjectStore

__all__ = ["ObjectStore"]
