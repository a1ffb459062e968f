"""Checks on where the server listens, made before any model loads (a wrong flag exits 2 in a second)."""

from __future__ import annotations

import errno
import os
import socket

from llmforge.console import UserError

LOOPBACK = ("127.0.0.1", "::1", "localhost")
API_KEY_ENV = "LLMFORGE_API_KEY"


def api_key(flag: str | None) -> str | None:
    """The key from --api-key, else from $LLMFORGE_API_KEY (kept out of the process list), else None."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV) or None
    if key is not None and len(key) < 8:
        raise UserError("--api-key: use at least 8 characters")
    return key


def check_host(host: str, key: str | None) -> None:
    """Only 127.0.0.1 / ::1 / localhost may go without a key: any other address can be reached by others."""
    if host not in LOOPBACK and key is None:
        raise UserError(
            f"--host {host}: listening beyond 127.0.0.1 needs --api-key KEY (or ${API_KEY_ENV}); every "
            "request must then carry 'Authorization: Bearer KEY'"
        )


def check_port(host: str, port: int) -> None:
    """Exit 2 when the port cannot be bound (in use, or not ours to take), before minutes of model loading."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: expected 1..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: already in use on {host}; pick another --port") from None
            raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
