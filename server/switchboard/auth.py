"""API keys: who may call what.

Clients send ``authorization: Bearer <key>``. The config stores each key's SHA-256 digest, a name
and a role. Keys are 256-bit random strings made by ``switchboard keys new``, so a plain SHA-256 is
enough: nobody can guess a preimage, and a slow password hash would only add latency to every call.
A presented key is hashed and looked up; the digest, not the key, is compared.

Roles are checked per method prefix, so a new service is covered as soon as it has a rule, and a
service without a rule is admin-only:

- ``caller``: ``/switchboard.v1.RouterService/`` (ListModels, SelectModel, Generate);
- ``admin``: everything, including ``/switchboard.v1.AccountService/``.

Health checking and server reflection are not Switchboard services and stay open.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from switchboard.errors import ConfigError, PermissionDeniedError, UnauthenticatedError

PROTECTED_PREFIX = "/switchboard."
KEY_PREFIX = "sb_"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Role(IntEnum):
    """What a key may call (values match ``switchboard.v1.ApiKeyRole``)."""

    CALLER = 1
    ADMIN = 2


# Method prefix -> roles allowed. The longest matching prefix wins; no match means admin only.
RULES: Sequence[tuple[str, frozenset[Role]]] = (
    ("/switchboard.v1.RouterService/", frozenset({Role.CALLER, Role.ADMIN})),
    ("/switchboard.v1.AccountService/", frozenset({Role.ADMIN})),
)
_ADMIN_ONLY = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its name, the SHA-256 hex digest of the key and its role."""

    name: str
    sha256: str
    role: Role


def digest(key: str) -> str:
    """The SHA-256 hex digest stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A new random key (256 bits, URL-safe)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def roles_for(method: str) -> frozenset[Role]:
    """The roles that may call ``method`` (a full gRPC method name)."""
    best = ""
    allowed = _ADMIN_ONLY
    for prefix, roles in RULES:
        if method.startswith(prefix) and len(prefix) > len(best):
            best, allowed = prefix, roles
    return allowed


def is_protected(method: str) -> bool:
    """True for Switchboard's own services; health and reflection are open."""
    return method.startswith(PROTECTED_PREFIX)


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key from the ``authorization`` metadata, or None when there is none."""
    for name, value in metadata or ():
        if name.lower() != "authorization":
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, key = text.strip().partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            return key.strip()
        return ""
    return None


class KeyRing:
    """The configured keys, indexed by digest."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_digest = {k.sha256: k for k in keys}

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured, so calls must authenticate."""
        return bool(self._by_digest)

    def authenticate(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> ApiKey | None:
        """The key that may call ``method``, or None when authentication is off or the method is
        open. Raises UnauthenticatedError (MISSING_CREDENTIALS, INVALID_API_KEY) or
        PermissionDeniedError (PERMISSION_DENIED)."""
        if not self.enabled or not is_protected(method):
            return None
        presented = bearer(metadata)
        if presented is None:
            raise UnauthenticatedError(
                "MISSING_CREDENTIALS",
                "this call needs an API key: send the metadata `authorization: Bearer <key>`",
                {"method": method},
            )
        key = self._by_digest.get(digest(presented)) if presented else None
        if key is None:
            raise UnauthenticatedError(
                "INVALID_API_KEY", "the API key is not valid (malformed, unknown or revoked)", {"method": method}
            )
        allowed = roles_for(method)
        if key.role not in allowed:
            raise PermissionDeniedError(
                "PERMISSION_DENIED",
                f"the key {key.name!r} has the role {key.role.name.lower()}, which may not call {method}",
                {
                    "method": method,
                    "key_name": key.name,
                    "role": key.role.name.lower(),
                    "allowed_roles": ",".join(sorted(r.name.lower() for r in allowed)),
                },
            )
        return key


def key_ring(entries: Iterable[tuple[str, str, int]], name: str = "<config>") -> KeyRing:
    """Validate ``(name, sha256, role)`` entries from the config; raise ConfigError naming the problem."""
    problems: list[str] = []
    keys: list[ApiKey] = []
    names: set[str] = set()
    digests: set[str] = set()
    for i, (key_name, sha, role) in enumerate(entries):
        where = f"api_keys[{i}] ({key_name or 'no name'})"
        if not key_name.strip():
            problems.append(f"{where}: name is required")
        elif key_name in names:
            problems.append(f"{where}: duplicate key name {key_name!r}")
        names.add(key_name)
        if not _DIGEST.match(sha):
            problems.append(f"{where}: sha256 must be 64 lowercase hex digits (the digest, never the key)")
        elif sha in digests:
            problems.append(f"{where}: the same key is listed twice")
        digests.add(sha)
        if role not in tuple(Role):
            problems.append(f"{where}: role must be API_KEY_ROLE_CALLER or API_KEY_ROLE_ADMIN")
            continue
        keys.append(ApiKey(key_name, sha, Role(role)))
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))
    return KeyRing(keys)
