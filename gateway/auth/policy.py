"""Inbound identity and policy: who a caller is (an API key or a bearer JWT) and which agents it may call.

A caller is ``apikey:<name>`` or ``<iss>|<sub>``. That name is the A2A ``User.user_name``, which
the task and push-config stores scope every row by, and the MCP principal that sessions and
``requestState`` are bound to: no caller gets, lists, cancels or subscribes to another's tasks.

Scopes: an agent's ``scopes`` are needed for every call to it. A2A requests do not say which
skill they exercise, so a message may name one in its metadata (``{"skill": "<id>"}``) and then
needs that skill's ``scopes`` too; a message that names no skill, or one the agent lacks, needs
the scopes of every skill. Callers scoped to one skill say which they use; nobody gets a skill
by leaving it unnamed. The named skill reaches the agent in the message, for agents that
dispatch on it.

With no API key and no issuer configured, every caller is anonymous, as in local development.

Composition is never a way around a rule: a workflow's steps, a handoff, a relay and an agent
reusing another's logic in-process all act as the original caller, and ``AuthPolicy.may_call``
(the same check the HTTP, gRPC and MCP edges make) decides each, from the caller the call
context carries (``caller_of``).

A bearer token that verified is remembered (by its SHA-256 digest, never the token) until it
expires, for at most ``VERIFIED_TOKEN_TTL_S``, and only while its issuer's keys are the ones it
verified under and due no refetch: a caller that sends the same token on every call (a peer
gateway, an SDK client) is not re-verified per request, and a key the issuer retires stops
admitting its tokens as soon as this gateway fetches the issuer's keys again (as without a cache).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from a2a.auth.user import UnauthenticatedUser, User
from a2a.types.a2a_pb2 import (
    APIKeySecurityScheme,
    ClientCredentialsOAuthFlow,
    HTTPAuthSecurityScheme,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from gateway.auth.api_keys import ApiKeyTable, AuthConfigError
from gateway.auth.jwt import JwtVerifier, peek
from gateway.cards.build import CardSecurity
from gateway.errors import AuthenticationError, MissingCredentialsError, PermissionDeniedError
from gateway.settings import IssuerSettings, Settings
from gateway.spec import AgentSpec, PythonRuntime, WorkflowRuntime

API_KEY_HEADER = "X-API-Key"
API_KEY_SCHEME = "apiKey"
VERIFIED_TOKEN_TTL_S = 60.0
"""The longest a verified bearer token is admitted again without verifying it (never past its ``exp``)."""
VERIFIED_TOKENS_MAX = 4096


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: its owner name and the scopes it holds.

    ``trusted`` marks the local operator (the stdio pipe), whom no agent's scopes restrict.
    """

    name: str
    scopes: frozenset[str]
    issuer: str = ""
    subject: str = ""
    trusted: bool = False

    def to_json(self) -> str:
        """The identity as JSON, to act for the same caller later (a resumed run); never a credential."""
        value = {"name": self.name, "scopes": sorted(self.scopes), "issuer": self.issuer, "subject": self.subject}
        return json.dumps({**value, "trusted": True} if self.trusted else value, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Identity | None:
        """An identity saved by ``to_json`` (None for an empty or unreadable one: act as nobody)."""
        try:
            value = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        scopes = value.get("scopes")
        return cls(
            name=value["name"],
            scopes=frozenset(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else frozenset(),
            issuer=str(value.get("issuer") or ""),
            subject=str(value.get("subject") or ""),
            trusted=value.get("trusted") is True,
        )


LOCAL_OPERATOR = Identity(name="", scopes=frozenset(), trusted=True)
"""Whoever holds the stdio pipe of ``switchboard mcp``: it owns tasks as the anonymous user does, unrestricted."""


class CallerUser(AuthenticatedUser):
    """A caller as Starlette sees it: A2A reads its ``display_name`` as the owner, MCP binds sessions to it."""

    def __init__(self, identity: Identity) -> None:
        super().__init__(
            AccessToken(
                token="",  # the credential itself is never kept
                client_id=identity.name,
                scopes=sorted(identity.scopes),
                subject=identity.subject or None,
                claims={"iss": identity.issuer} if identity.issuer else None,
            )
        )
        self.caller = identity


class VerifiedTokens:
    """Bearer tokens that verified, by digest, with their caller, until ``exp`` (at most ``ttl_s``); bounded."""

    def __init__(
        self,
        ttl_s: float = VERIFIED_TOKEN_TTL_S,
        max_entries: int = VERIFIED_TOKENS_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[Identity, float, int]] = {}

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str, current: Callable[[str, int], bool] = lambda issuer, version: True) -> Identity | None:
        """The caller ``token`` was verified as, while that holds and ``current(issuer, keys_version)``; else None."""
        digest = self._digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        identity, until, version = entry
        if self._clock() >= until or not current(identity.issuer, version):
            del self._entries[digest]
            return None
        return identity

    def put(self, token: str, identity: Identity, keys_version: int = 0) -> None:
        """Remember a token that just verified under ``keys_version`` of its issuer's keys (until its ``exp``)."""
        exp = peek(token)[1].get("exp")
        now = self._clock()
        until = now + self._ttl_s
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, float(exp))
        if until <= now:
            return
        if len(self._entries) >= self._max:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            while len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[self._digest(token)] = (identity, until, keys_version)


class RunOwner(User):
    """An owner by name alone, with no scopes: a resumed run's or a cross-replica cancel's caller (tests act as one)."""

    def __init__(self, owner: str) -> None:
        self._owner = owner

    @property
    def is_authenticated(self) -> bool:
        """Whether the owner is an identified caller."""
        return bool(self._owner)

    @property
    def user_name(self) -> str:
        """The owner the task store scopes tasks by."""
        return self._owner


class A2ACaller(User):
    """A caller as the A2A SDK sees it (the ``ServerCallContext`` user): its name owns its tasks."""

    def __init__(self, identity: Identity) -> None:
        self.caller = identity

    @property
    def is_authenticated(self) -> bool:
        """Always: an anonymous caller is the SDK's ``UnauthenticatedUser``."""
        return True

    @property
    def user_name(self) -> str:
        """The owner the task stores scope rows by."""
        return self.caller.name


def a2a_user(identity: Identity | None) -> User:
    """The A2A user of ``identity``: its name owns the caller's tasks; ``None`` is the anonymous user."""
    return A2ACaller(identity) if identity is not None else UnauthenticatedUser()


def caller_of(user: User) -> Identity | None:
    """The caller a ``ServerCallContext`` user acts for (None: anonymous), on every binding and in every step."""
    return user.caller if isinstance(user, A2ACaller) else None


# --- what is configured -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthSetup:
    """The credentials the settings actually configure, once parsed: what decides whether auth is on."""

    api_keys: int
    issuers: tuple[str, ...]
    empty_key_file: Path | None = None
    """A configured API key file that holds no key (so it turns nothing on)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthSetup:
        """Parse the keys (the key file read) and issuers; ``AuthConfigError`` when a setting cannot be honoured."""
        keys = len(ApiKeyTable.from_settings(settings))
        empty_file = None
        if settings.auth_api_keys_file is not None and keys == len(settings.auth_api_keys):
            empty_file = settings.auth_api_keys_file
        return cls(keys, tuple(i.issuer for i in settings.auth_issuers), empty_file)

    @property
    def enabled(self) -> bool:
        """Whether any caller credential is accepted (otherwise every caller is anonymous)."""
        return bool(self.api_keys or self.issuers)

    def describe(self) -> str:
        """One line saying which auth is on, for the start-up log."""
        parts = [f"{self.api_keys} API key(s)"] if self.api_keys else []
        if self.issuers:
            parts.append(f"bearer JWTs from {len(self.issuers)} issuer(s): {', '.join(self.issuers)}")
        said = " and ".join(parts) if parts else "off, every caller is anonymous"
        if self.empty_key_file is not None:
            said += f" (the API key file {self.empty_key_file} holds no keys)"
        return f"auth: {said}"


# --- the policy ---------------------------------------------------------------------------------


def _scheme_names(issuers: Sequence[IssuerSettings]) -> list[str]:
    names = [i.scheme or ("oauth2" if n == 0 else f"oauth2-{n + 1}") for n, i in enumerate(issuers)]
    if len(set(names)) != len(names) or API_KEY_SCHEME in names:
        raise AuthConfigError(f"issuer scheme names must be unique and not {API_KEY_SCHEME!r}: {', '.join(names)}")
    return names


class AuthPolicy:
    """Authenticates callers and checks an agent's (and skill's) scopes; builds the cards' security."""

    def __init__(
        self, api_keys: ApiKeyTable, tokens: JwtVerifier | None, issuers: Sequence[IssuerSettings] = ()
    ) -> None:
        self.api_keys = api_keys
        self.tokens = tokens
        self.verified = VerifiedTokens()
        self.issuers = tuple(issuers)
        self.scheme_names = _scheme_names(self.issuers)

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> AuthPolicy:
        """The policy ``settings`` configure; JWKS are fetched with ``http``."""
        tokens = None
        if settings.auth_issuers:
            tokens = JwtVerifier.build(
                settings.auth_issuers, http, ttl_s=settings.auth_jwks_ttl_s, refetch_s=settings.auth_jwks_refetch_s
            )
        return cls(ApiKeyTable.from_settings(settings), tokens, settings.auth_issuers)

    @classmethod
    def disabled(cls) -> AuthPolicy:
        """No credentials configured: every caller is anonymous."""
        return cls(ApiKeyTable([]), None)

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured (otherwise nothing is checked)."""
        return bool(len(self.api_keys) or self.tokens is not None)

    def protects(self, spec: AgentSpec) -> bool:
        """Whether calls to ``spec`` need credentials."""
        return self.enabled and spec.security == "default"

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Identity:
        """The caller an ``Authorization`` header or an API key names; ``AuthenticationError`` otherwise."""
        if api_key is not None and len(self.api_keys):
            name, scopes = self.api_keys.identify(api_key)
            return Identity(name=f"apikey:{name}", scopes=scopes)
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError(f"send 'Authorization: Bearer <token>'{self._or_api_key}")
            if self.tokens is None:
                raise AuthenticationError(f"bearer tokens are not accepted here; send an API key in {API_KEY_HEADER}")
            token = token.strip()
            known = self.verified.get(token, self.tokens.keys_current)
            if known is not None:
                return known
            issuer, subject, scopes = await self.tokens.verify(token)
            identity = Identity(name=f"{issuer}|{subject}", scopes=scopes, issuer=issuer, subject=subject)
            self.verified.put(token, identity, self.tokens.keys_version(issuer))
            return identity
        wanted = "a bearer token (Authorization: Bearer <token>)" if self.tokens is not None else ""
        if len(self.api_keys):
            wanted = f"{wanted} or an API key ({API_KEY_HEADER})" if wanted else f"an API key ({API_KEY_HEADER})"
        raise MissingCredentialsError(f"this agent requires authentication: send {wanted}")

    @property
    def _or_api_key(self) -> str:
        return f" or an API key in {API_KEY_HEADER}" if len(self.api_keys) else ""

    @staticmethod
    def skill_scoped(spec: AgentSpec) -> bool:
        """Whether a message's named skill changes what ``spec`` requires."""
        return any(s.scopes for s in spec.skills)

    @staticmethod
    def required_scopes(spec: AgentSpec, *, message: bool = False, skill: str | None = None) -> frozenset[str]:
        """What a call needs: the agent's scopes, plus for a message its skill's (or every skill's)."""
        needed = set(spec.scopes)
        if message:
            named = next((s for s in spec.skills if s.id == skill), None) if skill else None
            for s in [named] if named is not None else spec.skills:
                needed.update(s.scopes)
        return frozenset(needed)

    def authorize(
        self, identity: Identity, spec: AgentSpec, *, message: bool = False, skill: str | None = None
    ) -> None:
        """``PermissionDeniedError`` naming the missing scopes when ``identity`` may not make this call."""
        missing = self.required_scopes(spec, message=message, skill=skill) - identity.scopes
        if not missing:
            return
        what = f"skill {skill!r} of agent {spec.name!r}" if skill and any(s.id == skill for s in spec.skills) else None
        if what is None and message and self.skill_scoped(spec):
            what = f"agent {spec.name!r} (a message naming no skill of it in metadata.skill needs every skill's scopes)"
        raise PermissionDeniedError(
            f"{identity.name} lacks scope(s) {' '.join(sorted(missing))} required by {what or f'agent {spec.name!r}'}",
        )

    def may_call(self, caller: Identity | None, spec: AgentSpec, *, skill: str | None = None) -> str | None:
        """Why ``caller`` may not send ``spec`` a message (naming ``skill``), or None when it may.

        The check every edge makes for a direct call, for what is not one: a workflow's step, a
        handoff, a relay, an MCP tool, an agent running another's logic in-process.
        """
        if not self.protects(spec) or (caller is not None and caller.trusted):
            return None
        if caller is None:
            return f"agent {spec.name!r} requires an authenticated caller"
        try:
            self.authorize(caller, spec, message=True, skill=skill)
        except PermissionDeniedError as exc:
            return exc.detail
        return None

    def may_reuse(self, caller: Identity | None, entrypoint: str, specs: Iterable[AgentSpec]) -> str | None:
        """Why ``caller`` may not have the logic at ``entrypoint`` (``module:attr``) run in-process, or None.

        Each hosted ``python`` agent serving that entry point must admit the caller, as a message
        to it would need (an agent reusing the security reviewer's code needs the reviewer's scopes).
        """
        for spec in specs:
            if isinstance(spec.runtime, PythonRuntime) and spec.runtime.entrypoint == entrypoint:
                refusal = self.may_call(caller, spec)
                if refusal is not None:
                    return refusal
        return None

    def all_scopes(self, specs: Iterable[AgentSpec]) -> list[str]:
        """Every scope any protected agent or skill uses, sorted."""
        found: set[str] = set()
        for spec in specs:
            if self.protects(spec):
                found.update(spec.scopes)
                for skill in spec.skills:
                    found.update(skill.scopes)
        return sorted(found)

    def step_scopes(self, spec: AgentSpec, specs: Mapping[str, AgentSpec]) -> dict[str, list[str]] | None:
        """What the agents a workflow's runs may call need, by agent (nested workflows' too); None for an agent.

        Each protected participant or fallback, at any depth, with the scopes a message to it
        needs (an empty list: an authenticated caller). Runs check each step as its caller's.
        """
        if not self.enabled or not isinstance(spec.runtime, WorkflowRuntime):
            return None
        found: dict[str, list[str]] = {}
        seen = {spec.name}
        pending = list(_callees(spec))
        while pending:
            name = pending.pop(0)
            callee = specs.get(name)
            if name in seen or callee is None:
                continue
            seen.add(name)
            if self.protects(callee):
                found[name] = sorted(self.required_scopes(callee, message=True))
            pending += _callees(callee)
        return dict(sorted(found.items()))

    def card_security(self, spec: AgentSpec, specs: Mapping[str, AgentSpec] | None = None) -> CardSecurity | None:
        """The schemes and requirements ``spec``'s card advertises (``None``: an open agent, not a workflow).

        With ``specs`` (every hosted agent), a workflow's card also says what its steps need
        (``step_scopes``), and an OAuth flow offers those scopes too, so a client can ask for them.
        """
        steps = self.step_scopes(spec, specs) if specs is not None else None
        if not self.protects(spec):
            return CardSecurity(schemes={}, requirements=(), step_scopes=steps) if steps is not None else None
        schemes: dict[str, SecurityScheme] = {}
        if len(self.api_keys):
            schemes[API_KEY_SCHEME] = SecurityScheme(
                api_key_security_scheme=APIKeySecurityScheme(
                    location="header", name=API_KEY_HEADER, description="a gateway API key"
                )
            )
        offered = self.required_scopes(spec, message=True).union(*(steps or {}).values())
        for name, issuer in zip(self.scheme_names, self.issuers, strict=True):
            schemes[name] = _issuer_scheme(issuer, offered)

        def requirements(scopes: frozenset[str]) -> tuple[SecurityRequirement, ...]:
            listed = StringList(list=sorted(scopes))
            return tuple(SecurityRequirement(schemes={name: listed}) for name in schemes)

        skills = {s.id: requirements(frozenset(spec.scopes) | frozenset(s.scopes)) for s in spec.skills if s.scopes}
        return CardSecurity(
            schemes=schemes,
            requirements=requirements(frozenset(spec.scopes)),
            skill_requirements=skills,
            step_scopes=steps,
        )


def _callees(spec: AgentSpec) -> list[str]:
    """The agents a workflow's steps may call: its participants, then their fallbacks (none for an agent)."""
    runtime = spec.runtime
    if not isinstance(runtime, WorkflowRuntime):
        return []
    fallbacks = runtime.options.get("fallbacks")
    extra = [a for alts in fallbacks.values() for a in alts] if isinstance(fallbacks, dict) else []
    return [*runtime.participants, *(a for a in extra if isinstance(a, str))]


def _issuer_scheme(issuer: IssuerSettings, scopes: frozenset[str]) -> SecurityScheme:
    description = f"a bearer JWT from {issuer.issuer}"
    if issuer.token_url:
        flow = ClientCredentialsOAuthFlow(token_url=issuer.token_url, scopes={s: s for s in sorted(scopes)})
        return SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                description=description, flows=OAuthFlows(client_credentials=flow)
            )
        )
    return SecurityScheme(
        http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer", bearer_format="JWT", description=description)
    )
