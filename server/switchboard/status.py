"""Turns domain errors into ``google.rpc.Status`` with exactly one ``ErrorInfo``: the one place
where errors meet gRPC codes."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchboard.errors import SwitchboardError

DOMAIN = "switchboard"


def _status(code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    proto = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return rpc_status.to_status(proto)


def to_grpc_status(error: SwitchboardError) -> grpc.Status:
    """The status a caller sees for ``error``."""
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
    return _status(code, error.message, error.reason, error.metadata)


def internal_status(request_id: str) -> grpc.Status:
    """The status for an unexpected failure; it leaks nothing but the request id to quote."""
    return _status(
        grpc.StatusCode.INTERNAL,
        f"internal error; the server log has the details under request id {request_id}",
        "INTERNAL",
        {"request_id": request_id},
    )
