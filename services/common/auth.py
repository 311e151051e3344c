"""Who is calling, and what they may do.

Callers authenticate with a bearer token (``authorization: Bearer <token>``)
or, under mutual TLS, with their client certificate. A credentials file maps
each to an identity and a role, one line each::

    # credential              identity        role
    s3cr3t-agent-token         db-01           agent
    cn:web-01.example.com      web-01          agent
    0p3rator-token             alice           operator
    svc-token                  orchestrator    service

Roles, from least to most: ``reader`` reads; ``agent`` also writes the samples
of the system named by its identity; ``operator`` also proposes, approves,
forces and aborts changes; ``service`` is another cfgclone service acting for
a caller and may do everything. Without a credentials file authentication is
off and every caller is ``anonymous`` with the operator role, which suits a
laptop and nothing else.
"""

from __future__ import annotations

import contextvars
import enum
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cfgclone.common.errors import PermissionDenied, Unauthenticated, to_status
from cfgclone.common.handlers import Continuation, ServerInterceptor, wrap_method_handler

logger = logging.getLogger(__name__)

UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.v1")
"""Method prefixes open to everyone: health probes and reflection (grpcurl)."""


class Role(enum.IntEnum):
    """What a caller may do; each role may do what the ones below it may."""

    READER = 1
    AGENT = 2
    OPERATOR = 3
    SERVICE = 4


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Whether this caller holds ``role`` or a stronger one."""
        return self.role >= role


ANONYMOUS = Identity("anonymous", Role.OPERATOR)

_current_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar(
    "cfgclone_identity", default=ANONYMOUS
)


def current_identity() -> Identity:
    """The caller of the RPC being served."""
    return _current_identity.get()


def require_role(role: Role, action: str) -> Identity:
    """The caller, or PERMISSION_DENIED when it lacks ``role`` for ``action``."""
    identity = current_identity()
    if not identity.may(role):
        raise PermissionDenied(
            f"{action} needs the {role.name.lower()} role; {identity.name} is "
            f"{identity.role.name.lower()}",
            reason="ROLE_REQUIRED",
            metadata={"required_role": role.name.lower(), "identity": identity.name},
        )
    return identity


def require_own_system(system_id: str, action: str) -> Identity:
    """The caller, when it may act for ``system_id``: an agent only for its own system."""
    identity = current_identity()
    if identity.role == Role.AGENT and identity.name != system_id:
        raise PermissionDenied(
            f"agent {identity.name} may {action} only for systems/{identity.name}, "
            f"not systems/{system_id}",
            reason="OTHER_SYSTEM",
            metadata={"identity": identity.name, "system": f"systems/{system_id}"},
        )
    if identity.role < Role.AGENT:
        require_role(Role.AGENT, action)
    return identity


class CredentialsError(ValueError):
    """The credentials file cannot be read."""


@dataclass(frozen=True)
class Credentials:
    """Tokens and certificate names with the identity and role each stands for."""

    tokens: Mapping[str, Identity]
    certificate_names: Mapping[str, Identity]

    @classmethod
    def parse(cls, text: str, source: str = "credentials") -> Credentials:
        tokens: dict[str, Identity] = {}
        names: dict[str, Identity] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 3:
                raise CredentialsError(
                    f"{source}:{number}: expected 'credential identity role', "
                    f"got {len(fields)} fields"
                )
            credential, name, role_name = fields
            try:
                role = Role[role_name.upper()]
            except KeyError:
                roles = ", ".join(r.name.lower() for r in Role)
                raise CredentialsError(
                    f"{source}:{number}: unknown role {role_name!r} (one of {roles})"
                ) from None
            target = names if credential.startswith("cn:") else tokens
            target[credential.removeprefix("cn:")] = Identity(name, role)
        return cls(tokens, names)

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        return cls.parse(path.read_text(encoding="utf-8"), str(path))

    def identify(self, token: str | None, certificate_name: str | None) -> Identity | None:
        """The identity of a token (compared in constant time) or a verified certificate name."""
        if token:
            for known, identity in self.tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return identity
            return None
        if certificate_name is not None:
            return self.certificate_names.get(certificate_name)
        return None


def _bearer_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _certificate_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    names = list(context.auth_context().get("x509_common_name", ()))
    return names[0].decode() if names else None


class AuthInterceptor(ServerInterceptor):
    """Authenticates each call and makes its identity available to the servicer.

    With ``credentials`` None every call is :data:`ANONYMOUS`.
    """

    def __init__(self, credentials: Credentials | None) -> None:
        self._credentials = credentials

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(UNAUTHENTICATED_METHODS):
            return handler
        token = _bearer_token(handler_call_details.invocation_metadata)
        return wrap_method_handler(
            handler,
            lambda call, context: self._around(call, context, token),
            lambda call, context: self._around_stream(call, context, token),
        )

    async def _authenticate(
        self, context: grpc.aio.ServicerContext[Any, Any], token: str | None
    ) -> Identity | None:
        if self._credentials is None:
            return ANONYMOUS
        identity = self._credentials.identify(token, _certificate_name(context))
        if identity is None:
            problem = (
                "the bearer token is not known"
                if token
                else "send 'authorization: Bearer <token>' or a client certificate"
            )
            status = to_status(Unauthenticated(problem, reason="CREDENTIALS_REQUIRED"))
            await context.abort(status.code, status.details, status.trailing_metadata)
        return identity

    async def _around(
        self, call: Callable[[], Awaitable[Any]], context: Any, token: str | None
    ) -> Any:
        identity = await self._authenticate(context, token)
        assert identity is not None
        reset = _current_identity.set(identity)
        try:
            return await call()
        finally:
            _current_identity.reset(reset)

    async def _around_stream(
        self, call: Callable[[], AsyncIterator[Any]], context: Any, token: str | None
    ) -> AsyncIterator[Any]:
        identity = await self._authenticate(context, token)
        assert identity is not None
        reset = _current_identity.set(identity)
        try:
            async for response in call():
                yield response
        finally:
            _current_identity.reset(reset)
