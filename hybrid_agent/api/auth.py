"""Bearer tokens, stored as SHA-256 hashes, with roles viewer < operator < approver < admin."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.store import queries

ROLES = ("viewer", "operator", "approver", "admin")
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ha_" + secrets.token_urlsafe(32)


async def create_token(sessions: async_sessionmaker[AsyncSession], *, name: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    token = new_token()
    async with sessions.begin() as session:
        await queries.add_token(session, name=name, role=role, token_hash=hash_token(token))
    return token


async def ensure_admin_token(sessions: async_sessionmaker[AsyncSession], path: Path) -> str:
    """The admin token of this data dir: written once (mode 0600) on first start, and
    registered again if the database was reset."""
    if path.exists():
        token = path.read_text().strip()
        async with sessions.begin() as session:
            if await queries.find_token(session, token_hash=hash_token(token)) is None:
                await queries.add_token(session, name="admin", role="admin", token_hash=hash_token(token))
        return token
    token = await create_token(sessions, name="admin", role="admin")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


class TokenCache:
    """Valid tokens seen in the last ``ttl_s`` seconds, so that a busy client does not cost
    a database read per request; a revocation takes effect within ``ttl_s``."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            self._entries.pop(token_hash, None)
            return None
        return entry[1]

    def put(self, token_hash: str, principal: Principal) -> None:
        if len(self._entries) > 10_000:  # bounded: only valid tokens get here, but be safe
            self._entries.clear()
        self._entries[token_hash] = (time.monotonic(), principal)


async def authenticate(request: Request, token: str) -> Principal:
    token_hash = hash_token(token)
    cache: TokenCache = request.app.state.token_cache
    principal = cache.get(token_hash)
    if principal is None:
        async with request.app.state.sessions() as session:
            row = await queries.find_token(session, token_hash=token_hash)
        if row is None:
            raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
        principal = Principal(name=row.name, role=row.role)
        cache.put(token_hash, principal)
    return principal


COOKIE = "ha_token"   # the console's login: HttpOnly, SameSite=Strict
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require(role: str):  # type: ignore[no-untyped-def]
    """A dependency: the caller's token (a bearer header, or the console's cookie) must
    hold ``role`` or a higher one."""

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        if credentials is not None and credentials.scheme.lower() == "bearer":
            principal = await authenticate(request, credentials.credentials)
        elif request.cookies.get(COOKIE):
            check_same_origin(request)
            principal = await authenticate(request, request.cookies[COOKIE])
        else:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        check_role(principal, role)
        return principal

    return dependency


def check_role(principal: Principal, role: str) -> None:
    if ROLES.index(principal.role) < ROLES.index(role):
        raise HTTPException(403, f"role {principal.role!r} may not do this; needs {role!r} or higher")


def check_same_origin(request: Request) -> None:
    """A cookie rides along on requests other sites make the browser send: a state-changing
    one must come from a page of ours (SameSite=Strict already stops most of them)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host", "")
    if origin is None or origin.split("://", 1)[-1].split("/", 1)[0] != host:
        raise HTTPException(403, "a cookie-authenticated change must come from the console itself")
