"""Whether a backend (the ledger's database, the limiter's Redis) is reachable, as the calls that
use it find out: the first failure starts an outage, logged once; the next success ends it, logged
once. Listeners (the gRPC health service) hear each change."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from switchboard.errors import BackendUnavailableError

log = structlog.get_logger("switchboard")


class Outage:
    """The reachability of one backend, named ``name`` (``ledger``, ``limiter``); ``reason`` is
    the ErrorInfo reason its failures carry (``LEDGER_UNAVAILABLE``)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        self.down = False
        self.failures = 0
        """Calls refused during the current outage."""
        self.listeners: list[Callable[[bool], None]] = []
        """Told ``available`` (True or False) when an outage starts or ends."""

    def failed(self, exc: BaseException) -> BackendUnavailableError:
        """A call could not reach the backend: start (and log) an outage unless one is going on.
        Returns the error to raise to the caller."""
        self.failures += 1
        if not self.down:
            self.down = True
            log.error(f"{self.name}_unavailable", error=f"{type(exc).__name__}: {exc}".strip()[:500])
            self._tell(False)
        return BackendUnavailableError(
            self.reason, f"the {self.name} is unreachable; retry later", {"backend": self.name}
        )

    def succeeded(self) -> None:
        """A call reached the backend: end (and log) the outage, if one was going on."""
        if self.down:
            self.down = False
            log.info(f"{self.name}_recovered", refused_calls=self.failures)
            self.failures = 0
            self._tell(True)

    def _tell(self, available: bool) -> None:
        for listener in self.listeners:
            listener(available)
