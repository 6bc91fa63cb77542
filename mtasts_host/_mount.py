"""Where a request goes below the point an app is mounted at."""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """
    The path below the mount point, as Starlette's routing takes it: the root path cut off
    at a "/" only. granian's ``--url-path-prefix /`` gives a root path of "/", and
    hypercorn's paths do not repeat theirs (``/tlsrpt`` under ``/tls``).
    """
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path
