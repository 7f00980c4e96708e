"""The skeleton every HTTP adapter shares: one pooled client, a POST that streams, failures
classified, and the request's turns in a neutral form."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from switchboard.providers.http import Endpoint, HttpError, StreamResponse, from_exception, from_status, make_client
from switchboard.tracing import inject_headers
from switchboard.types import ChatMessage, GenerationRequest, Modality, Model, ProviderEvent, Role


def turns(request: GenerationRequest) -> tuple[str, list[ChatMessage]]:
    """The system text and the other messages of a request (a prompt is one user message)."""
    if not request.messages:
        return "", [ChatMessage(Role.USER, request.prompt, request.attachments)]
    system = "\n\n".join(m.content for m in request.messages if m.role is Role.SYSTEM)
    return system, [m for m in request.messages if m.role is not Role.SYSTEM]


def data_uri(mime_type: str, data: bytes) -> str:
    """An attachment's bytes as a data: URI."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


class HttpProvider:
    """A provider reached over HTTP with streaming answers; subclasses build the request and read
    the events."""

    modalities: frozenset[Modality] = frozenset({Modality.TEXT})

    def __init__(self, name: str, endpoint: Endpoint) -> None:
        self._name = name
        self.endpoint = endpoint
        self._client = make_client(endpoint)

    @property
    def name(self) -> str:
        """The adapter's name."""
        return self._name

    @property
    def simulated(self) -> bool:
        """Real providers are not simulated."""
        return False

    def supports(self, model: Model) -> bool:
        """Whether this adapter can serve the model's modality."""
        return model.modality in self.modalities

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The path, headers and JSON body of the call."""
        raise NotImplementedError

    def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """The output events read from a successful streaming response."""
        raise NotImplementedError

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Call the provider and stream its answer; closing this generator closes the request."""
        path, headers, body = self.build(model, request)
        inject_headers(headers)  # the trace context of the attempt, when tracing is on
        try:
            async with self._client.stream("POST", path, headers=headers, json=body) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    raise from_status(
                        response.status_code,
                        text,
                        response.headers.get("retry-after"),
                        self.name,
                        self.endpoint.api_key,
                    )
                async for event in self.events(response, model):
                    yield event
        except HttpError as exc:
            raise from_exception(exc, self.name) from None

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._client.is_closed

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()
