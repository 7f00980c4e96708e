"""Server reflection that also answers for method names.

Python's descriptor pool resolves ``pkg.Service`` but not ``pkg.Service.Method``, which some
clients (ghz among them) ask for; this pool falls back to the enclosing symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection


class _MethodAwarePool:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            parent, _, _ = symbol.rpartition(".")
            if not parent:
                raise
            return self._pool.FindFileContainingSymbol(parent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Register reflection (v1alpha and v1) for ``service_names`` plus reflection itself."""
    pool = _MethodAwarePool(descriptor_pool.Default())
    reflection.enable_server_reflection((*service_names, reflection.SERVICE_NAME), server, pool=pool)
