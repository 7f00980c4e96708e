"""The skeleton every HTTP adapter shares: one pooled client, a POST that streams, failures
classified, and the request's turns in a neutral form."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.http import (
    Endpoint,
    HttpError,
    StreamResponse,
    bad_response,
    from_exception,
    from_status,
    make_client,
)
from switchboard.tracing import inject_headers
from switchboard.types import Attachment, ChatMessage, GenerationRequest, Modality, Model, ProviderEvent, Role

TEXT_ATTACHMENTS = ("text/", "application/json")
"""Attachments every text model takes (no capability needed): sent as text when given as bytes."""


def turns(request: GenerationRequest) -> tuple[str, list[ChatMessage]]:
    """The system text and the other messages of a request (a prompt is one user message).

    No attachment is left behind: the request's own attachments and those of system messages
    (which every API takes as text only) travel with the last user message."""
    if not request.messages:
        return "", [ChatMessage(Role.USER, request.prompt, request.attachments)]
    system = "\n\n".join(m.content for m in request.messages if m.role is Role.SYSTEM)
    rest = [m for m in request.messages if m.role is not Role.SYSTEM]
    extra = (*request.attachments, *(a for m in request.messages if m.role is Role.SYSTEM for a in m.attachments))
    if extra:
        last = max((i for i, m in enumerate(rest) if m.role is Role.USER), default=-1)
        if last < 0:
            rest.append(ChatMessage(Role.USER, "", extra))
        else:
            rest[last] = ChatMessage(Role.USER, rest[last].content, (*rest[last].attachments, *extra))
    return system, rest


def data_uri(mime_type: str, data: bytes) -> str:
    """An attachment's bytes as a data: URI."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


def mime(attachment: Attachment) -> str:
    """The attachment's ``type/subtype``, lower-cased, without parameters."""
    return attachment.mime_type.split(";", 1)[0].strip().lower()


def inline_text(attachment: Attachment) -> str | None:
    """A text attachment given as bytes, as text headed by its name; None for anything else."""
    if not attachment.data or not mime(attachment).startswith(TEXT_ATTACHMENTS):
        return None
    head = f"[{attachment.name or 'attachment'} ({mime(attachment)})]\n"
    return head + attachment.data.decode("utf-8", errors="replace")


def string(value: Any) -> str:
    """A field of a provider's answer that must be a string (TypeError otherwise, which the
    stream turns into PROVIDER_BAD_RESPONSE)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def count(value: Any) -> int:
    """A field of a provider's answer that must be a token count or an index (TypeError
    otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a count, got {value!r:.40}")
    return value


def unsupported(provider: str, model: Model, attachment: Attachment, how: str = "") -> ProviderError:
    """The error for an attachment the adapter cannot send (it is refused, never dropped); it is
    retryable, so automatic selection falls back to a model that takes it."""
    given = "by URI" if attachment.uri else "as bytes"
    return ProviderError(
        "PROVIDER_UNSUPPORTED_INPUT",
        f"{provider} cannot send a {mime(attachment)} attachment given {given} to {model.id}{how}",
        retryable=True,
    )


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
                try:
                    async for event in self.events(response, model):
                        yield event
                except (ProviderError, HttpError):
                    raise
                except Exception as exc:
                    # A stream of valid JSON in a shape the adapter does not expect (a string for
                    # an object, a word for a number) is the provider's fault, not ours: it is
                    # PROVIDER_BAD_RESPONSE, retryable and counted, never INTERNAL.
                    raise bad_response(self.name, f"an answer it cannot read ({type(exc).__name__})") from exc
        except HttpError as exc:
            raise from_exception(exc, self.name) from None

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._client.is_closed

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()
