"""What the server refuses: requests without the token, bodies over their limit, paths outside the roots.

The token and body checks are plain ASGI middleware, so they hold for every route, HTTP and
WebSocket alike. Paths are resolved (symlinks followed) before they are compared with the roots.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PUBLIC_PREFIXES = ("/static/",)  # the page's own files hold no data: a browser fetches them without a token
WS_CLOSE_FORBIDDEN = 4403  # a WebSocket refused for its token (HTTP: 403 with the reason)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS


class Forbidden(HTTPException):
    """403 with the reason."""

    def __init__(self, reason: str):
        super().__init__(403, reason)


def _token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


async def _send_json(send: Any, status: int, content: dict) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TokenMiddleware:
    """Every request needs ``Authorization: Bearer <token>`` (WebSocket: ``?token=``) when a
    token is set, except the page itself (``GET /``, ``/static/...``). A refusal is a 403 with the
    reason (missing or wrong token); a refused WebSocket is closed with code 4403 and the reason."""

    def __init__(self, app: Any, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            if path == "/" or path.startswith(PUBLIC_PREFIXES):
                return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
            given = (query.get("token") or [None])[0]
            if not _token_matches(given, self.token):
                reason = ("missing token" if not given else "wrong token") + ": add ?token=<token>"
                await send({"type": "websocket.close", "code": WS_CLOSE_FORBIDDEN, "reason": reason})
                return
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        scheme, _, given = headers.get(b"authorization", b"").decode(errors="replace").partition(" ")
        if scheme.lower() != "bearer" or not _token_matches(given.strip(), self.token):
            reason = "missing token" if not given else "wrong token"
            return await _send_json(send, 403, {"reason": f"{reason}: send the header `Authorization: Bearer <token>`"})
        return await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuses HTTP bodies over their limit: by ``Content-Length`` up front, else while reading."""

    def __init__(self, app: Any, default_limit: int, limits: dict[str, int]):
        self.app = app
        self.default_limit = default_limit
        self.limits = limits  # path suffix -> limit

    def limit_for(self, path: str) -> int:
        for suffix, limit in self.limits.items():
            if path.endswith(suffix):
                return limit
        return self.default_limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, {"reason": f"request body larger than {limit} bytes"})
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


class Roots:
    """The folders plans and file pickers may touch; paths are given relative to them."""

    def __init__(self, roots: Sequence[str | Path]):
        if not roots:
            raise ValueError("at least one root folder is needed")
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise ValueError(f"--root {root}: not a folder")

    @property
    def first(self) -> Path:
        return self.roots[0]

    def contains(self, path: Path) -> bool:
        """Whether resolved ``path`` lies in a root."""
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, relative: str, must_exist: bool = True) -> Path:
        """``relative`` resolved inside the first root that has it; :class:`Forbidden` when it is
        absolute, climbs with ``..``, or resolves (through a symlink) outside every root."""
        if not isinstance(relative, str):
            raise Forbidden("a path must be a string")
        if "\x00" in relative:
            raise Forbidden("a path must not hold NUL characters")
        parts = PurePosixPath(relative.replace("\\", "/"))
        if parts.is_absolute() or relative.startswith("~") or (len(relative) > 1 and relative[1] == ":"):
            raise Forbidden(f"{relative!r}: give a path relative to the root, not an absolute one")
        if ".." in parts.parts:
            raise Forbidden(f"{relative!r}: '..' is not allowed in paths")
        candidates = [(root / parts).resolve() for root in self.roots]
        inside = [c for c in candidates if self.contains(c)]
        if not inside:
            raise Forbidden(f"{relative!r} resolves outside the root (through a symbolic link)")
        existing = [c for c in inside if c.exists()]
        if must_exist and not existing:
            raise HTTPException(404, f"{relative!r}: no such file or folder under the root")
        return (existing or inside)[0]

    def relative_name(self, path: Path) -> str:
        """``path`` (inside a root) as the page names it: relative to its root."""
        for root in self.roots:
            if path == root or path.is_relative_to(root):
                name = path.relative_to(root).as_posix()
                return "" if name == "." else name
        return str(path)

    def check_plan_path(self, value: str, base: Path, field: str) -> None:
        """Refuse a data path a plan names (``raw_data.path``, ``init.state``, ...) outside the roots."""
        expanded = os.path.expanduser(os.path.expandvars(value))
        resolved = (base / expanded).resolve()
        if not self.contains(resolved):
            raise Forbidden(f"{field}: {value!r} is outside the server's root folder(s)")


def check_relative_name(name: str) -> PurePosixPath:
    """``name`` as a relative path; :class:`Forbidden` when it is absolute or climbs with ``..``."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise Forbidden("a file name is needed (no NUL characters)")
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or name.startswith("~") or (len(name) > 1 and name[1] == ":"):
        raise Forbidden(f"{name!r}: give a name relative to the job's output folder")
    if ".." in parts.parts:
        raise Forbidden(f"{name!r}: '..' is not allowed in output names")
    return parts


def file_in(folder: Path, name: str) -> Path:
    """``name`` (relative, ``/``-separated) resolved inside ``folder``; :class:`Forbidden` when it is
    absolute, climbs with ``..`` or resolves (through a symbolic link) outside ``folder``."""
    parts = check_relative_name(name)
    folder = folder.resolve()
    path = (folder / parts).resolve()
    if not path.is_relative_to(folder):
        raise Forbidden(f"{name!r} resolves outside the job's output folder (through a symbolic link)")
    return path
