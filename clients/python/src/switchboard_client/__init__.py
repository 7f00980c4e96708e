"""A small typed client for Switchboard.

    from switchboard_client import SwitchboardClient

    async with SwitchboardClient("127.0.0.1:50051") as sb:
        decision = await sb.select_model(account_id="acct-1", prompt="Hello")
        async for event in sb.generate(account_id="acct-1", prompt="Hello", request_id="r-1"):
            if isinstance(event, v1.TextDelta):
                print(event.text, end="")

Errors are raised as ``SwitchboardError`` carrying the gRPC code and the ErrorInfo reason and
metadata. The generated stubs are in ``switchboard_client.v1``.
"""

from __future__ import annotations

from switchboard_client.client import (
    Event,
    SwitchboardClient,
    SwitchboardError,
    build_request,
)

__all__ = ["Event", "SwitchboardClient", "SwitchboardError", "build_request"]
