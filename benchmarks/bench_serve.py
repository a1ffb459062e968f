"""Serving speed: `llmforge serve` against bare `transformers` generate on the same model, and the server and
review store under concurrent clients, all on 127.0.0.1.

- Model: the tests' tiny llama (2 layers, d=64, a 512-token byte-level BPE on tinyshakespeare) with the ChatML
  template installed, so /v1/chat/completions renders it as `llmforge chat` does.
- Single client: a greedy 64-token completion through the HTTP API (the OpenAI-format JSON body) vs
  `model.generate` called in this process on the same prompt ids with the same settings; ROUNDS interleaved
  rounds of REPEAT requests each, medians reported, and the ratio ours / bare of generated tokens per second.
  The server's overhead is HTTP, JSON, validation and the thread hand-off. Time to first token is measured on
  the streaming route (first SSE delta).
- Load: CLIENTS threads each sending REQUESTS chat requests (32 new tokens, greedy) at once: requests/s,
  p50/p95 latency, none refused (the server's queue is sized to hold them).
- Review store: 16 labellers submitting labels at once over HTTP: submissions/s and p50/p95 latency (each
  submission commits to SQLite and rewrites the preference file).
- torch runs one thread on both sides (OMP_NUM_THREADS=1 for the server, `torch.set_num_threads(1)` here): with
  two intra-op threads on a 2-core machine shared with other work, the main thread's generate ran 4-10x
  slower and far noisier than in a worker thread, which measured the machine, not the server.

`BENCH_QUICK=1` runs fewer rounds (a smoke run, not a measurement).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = 1 if QUICK else 3
REPEAT = 2 if QUICK else 5
NEW_TOKENS = 64
CLIENTS, REQUESTS = (4, 2) if QUICK else (8, 4)
PROMPT = "To be, or not to be, that is the question:"


def _post(url: str, body: dict, stream: bool = False) -> tuple[float, float | None, dict | None]:
    """(seconds, seconds to the first streamed delta, parsed body)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    first = None
    with urllib.request.urlopen(request, timeout=300) as r:
        if not stream:
            data = json.loads(r.read())
            return time.perf_counter() - start, None, data
        for line in r:
            if first is None and line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("text") or (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - start
    return time.perf_counter() - start, first, None


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _concurrent(n: int, work) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        for t in work(i):
            with lock:
                latencies.append(t)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies


def run() -> dict[str, Any]:
    if not DATA.is_dir():
        return {"skipped": f"{DATA} not present"}
    import torch

    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        return _measure()
    finally:  # the benchmarks after this one run as they would alone
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


def _measure() -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from eval_tiny_model import build_tiny_model
    from serving import build_chat_model, free_port, running

    from llmforge.console import configure, quiet_hf_libraries

    configure(quiet=True)
    quiet_hf_libraries()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the server subprocesses
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chat = build_chat_model(
            build_tiny_model(root / "tiny", DATA / "tinyshakespeare" / "input.txt"), root / "chat"
        )
        bare = _bare(chat)
        port = free_port()
        args = ["serve", f"chat={chat}", "--device", "cpu", "--parallel", "2", "--max-waiting", "64"]
        ours_tps, bare_tps, latency, ttft = [], [], [], []
        with running(args, "127.0.0.1", port, root / "serve.log") as base:
            body = {"model": "chat", "prompt": PROMPT, "max_tokens": NEW_TOKENS, "temperature": 0}
            _post(base + "/v1/completions", body)  # warm-up
            bare()
            for _ in range(ROUNDS):
                for _ in range(REPEAT):
                    seconds, _, data = _post(base + "/v1/completions", body)
                    ours_tps.append(data["usage"]["completion_tokens"] / seconds)
                    latency.append(seconds)
                for _ in range(REPEAT):
                    bare_tps.append(bare())
                for _ in range(REPEAT):
                    _, first, _ = _post(base + "/v1/completions", {**body, "stream": True}, stream=True)
                    ttft.append(first)
            chat_body = {"model": "chat", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32,
                         "temperature": 0}  # fmt: skip

            def chat_client(i: int):
                return [_post(base + "/v1/chat/completions", chat_body)[0] for _ in range(REQUESTS)]

            load_s, load_lat = _concurrent(CLIENTS, chat_client)
        review = _review_load(root, free_port, running)
    ours, theirs = statistics.median(ours_tps), statistics.median(bare_tps)
    return {
        "quick": QUICK,
        "model": "tests/eval_tiny_model.py (2 layers, d=64, vocab 512) + ChatML",
        "single_client": {
            "new_tokens": NEW_TOKENS,
            "ours_tokens_per_s": round(ours, 1),
            "bare_generate_tokens_per_s": round(theirs, 1),
            "ratio_ours_over_bare": round(ours / theirs, 3),
            "latency_s_median": round(statistics.median(latency), 4),
            "time_to_first_token_s_median": round(statistics.median(ttft), 4),
            "rounds": ROUNDS,
            "requests_per_round": REPEAT,
        },
        "load": {
            "clients": CLIENTS,
            "requests": CLIENTS * REQUESTS,
            "new_tokens": 32,
            "parallel_slots": 2,
            "requests_per_s": round(len(load_lat) / load_s, 2),
            "latency_s_p50": round(_percentile(load_lat, 0.5), 3),
            "latency_s_p95": round(_percentile(load_lat, 0.95), 3),
        },
        "review_store": review,
    }


def _bare(model_dir: Path):
    """A function generating NEW_TOKENS greedy tokens with transformers directly; returns tokens/s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([tok(PROMPT)["input_ids"]])

    def once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True,
                                 pad_token_id=tok.eos_token_id)  # fmt: skip
        return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - start)

    return once


def _review_load(root: Path, free_port, running) -> dict[str, Any]:
    rows = [{"prompt": f"prompt {i}", "completion_a": f"a{i}", "completion_b": f"b{i}"} for i in range(20)]
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["review", str(pairs), "--out", str(root / "review")]
    with running(args, "127.0.0.1", free_port(), root / "review.log") as base:

        def labeller(i: int):
            """Each labeller takes the next pair and labels it until none is left; a submission's latency is
            the POST alone (the GET of the next pair is not timed)."""
            out, person = [], f"bench{i:02d}"
            for n in range(len(rows)):
                with urllib.request.urlopen(
                    f"{base}/review/api/next?kind=pair&person={person}", timeout=60
                ) as r:
                    item = json.loads(r.read())["item"]
                start = time.perf_counter()
                body = {"item": item["id"], "labeller": person, "choice": "ab"[(i + n) % 2]}
                request = urllib.request.Request(base + "/review/api/label", data=json.dumps(body).encode(),
                                                 headers={"Content-Type": "application/json"})  # fmt: skip
                urllib.request.urlopen(request, timeout=60).read()
                out.append(time.perf_counter() - start)
            return out

        seconds, lat = _concurrent(16, labeller)
    return {
        "labellers": 16,
        "submissions": len(lat),
        "submissions_per_s": round(len(lat) / seconds, 1),
        "latency_ms_p50": round(1000 * _percentile(lat, 0.5), 1),
        "latency_ms_p95": round(1000 * _percentile(lat, 0.95), 1),
    }
