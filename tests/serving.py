"""Helpers for the tests that start a real `llmforge serve` / `llmforge review` on 127.0.0.1: a free port, the
server as a subprocess that is waited for and always stopped, and the tiny chat model they serve."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def build_chat_model(tiny: Path, out: Path) -> Path:
    """The tiny model with the ChatML template installed (role tokens added as embedding rows)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.generation.chat_template import BUILTIN, install

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    install(tok, model, BUILTIN["chatml"])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def get_json(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@contextlib.contextmanager
def running(args: list[str], host: str, port: int, log: Path, headers: dict | None = None,
            timeout: float = 180) -> Iterator[str]:  # fmt: skip
    """Start `llmforge ARGS` (serve or review) and yield its base URL once /health answers; stop it after."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmforge", *args, "--host", host, "--port", str(port)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                status, _ = get_json(base + "/health", headers, timeout=2)
                if status == 200:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {timeout} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
