"""Domain errors. Each carries a gRPC-neutral code name, an ErrorInfo reason and metadata.

The core raises these; ``status.py`` turns them into ``google.rpc.Status`` in one place.
"""

from __future__ import annotations

from collections.abc import Mapping


class SwitchboardError(Exception):
    """Base of every error the service reports to callers with a reason."""

    code: str = "INTERNAL"

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidRequestError(SwitchboardError):
    """Raised when a request is malformed: a missing field, a bad enum value or MIME type, an
    oversize prompt."""

    code = "INVALID_ARGUMENT"


class NotFoundError(SwitchboardError):
    """Raised when a request names a model, plan or account the server does not know."""

    code = "NOT_FOUND"


class PreconditionError(SwitchboardError):
    """Raised when a well-formed request cannot be served: a pinned model that lacks what the
    request needs, or no model that offers it."""

    code = "FAILED_PRECONDITION"


class ExhaustedError(SwitchboardError):
    """Raised when a quota stands in the way: credits or concurrent requests."""

    code = "RESOURCE_EXHAUSTED"


class UnavailableError(SwitchboardError):
    """Raised when every model that could serve the request is failing or cooling down."""

    code = "UNAVAILABLE"


class ProviderError(Exception):
    """Raised by a provider adapter when a call fails.

    ``retryable`` failures (rate limits, overload, 5xx, timeouts, dropped connections) let
    automatic selection fall back to the next model when no output has been sent yet.
    ``code`` is the gRPC code name reported when the failure ends the request.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable
        self.code = code


class StreamInterruptedError(SwitchboardError):
    """Raised when a provider fails after output was already sent: there is no silent switch to
    another model, so the stream ends with this error."""

    code = "UNAVAILABLE"


class ShuttingDownError(SwitchboardError):
    """Raised into a stream the server cuts at the end of its shutdown grace: the cancellation is
    the server's, not the caller's, so nothing is charged."""

    code = "UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "SERVER_SHUTTING_DOWN", "the server is shutting down and cut this stream; nothing was charged", {}
        )


class HoldLostError(SwitchboardError):
    """Raised when a running stream finds its credit hold or concurrency slot gone (swept by
    another replica while this process was paused past the hold's or lease's life): the stream
    ends rather than finish free or run over the limit; nothing is charged."""

    code = "UNAVAILABLE"


class BackendUnavailableError(SwitchboardError):
    """Raised when the ledger's database or the limiter's Redis cannot be reached
    (``LEDGER_UNAVAILABLE``, ``LIMITER_UNAVAILABLE``); the caller may retry."""

    code = "UNAVAILABLE"


class ConfigError(Exception):
    """Raised at start-up (or reload) when the config file is missing, malformed or inconsistent.
    The message names the file and the problem."""


class UnauthenticatedError(SwitchboardError):
    """Raised when a call to a protected service carries no API key, or one the server does not know."""

    code = "UNAUTHENTICATED"


class PermissionDeniedError(SwitchboardError):
    """Raised when a known API key calls a service its role does not allow."""

    code = "PERMISSION_DENIED"
