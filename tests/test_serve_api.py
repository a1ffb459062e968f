"""`llmforge serve` as a client sees it: a real server (uvicorn, 127.0.0.1) on the tiny untrained llama, talked
to with the OpenAI Python client and plain HTTP — replies equal the in-process generation layer's, streaming
equals non-streaming, the limits and errors answer with OpenAI error bodies, a client that goes away has its
generation stopped, a full queue answers 503, and a server beyond 127.0.0.1 wants its key on every route."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
import urllib.request

import openai
import pytest
from conftest import SHARED_DATA
from eval_tiny_model import build_tiny_model
from serving import build_chat_model, free_port, get_json, running

from llmforge.cli import main

pytestmark = pytest.mark.slow
MAX_TOKENS = 300


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    root = tmp_path_factory.mktemp("serve")
    tiny = build_tiny_model(root / "tiny", SHARED_DATA / "tinyshakespeare" / "input.txt")
    return {"base": tiny, "chat": build_chat_model(tiny, root / "chat")}


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    port = free_port()
    args = ["serve", f"chat={models['chat']}", f"base={models['base']}", "--max-tokens", str(MAX_TOKENS),
            "--max-body", "20000", "--parallel", "2", "--max-waiting", "3", "--device", "cpu"]  # fmt: skip
    with running(args, "127.0.0.1", port, tmp_path_factory.mktemp("log") / "serve.log") as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)


def _post(url: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def _post_stream(url: str, body: dict) -> tuple[int, dict]:
    """(status, {"events": [data of each event]}) for a 200 stream, (status, the JSON error body) otherwise."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            text = r.read().decode()
            return r.status, {"events": [e.removeprefix("data: ") for e in text.split("\n\n") if e]}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------------------ replies


def test_chat_reply_equals_the_generation_layer(client, models):
    from llmforge.generation.loading import load_for_generation
    from llmforge.generation.sampling import chat_reply
    from llmforge.generation.settings import SamplingSettings

    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "To be, or not to be"},
    ]
    r = client.chat.completions.create(model="chat", messages=messages, max_tokens=20, temperature=0)
    local = chat_reply(load_for_generation(models["chat"], "cpu"), messages,
                       SamplingSettings(max_new_tokens=20, temperature=0))  # fmt: skip
    assert r.choices[0].message.content == local.text
    assert r.choices[0].message.role == "assistant"
    assert (
        r.choices[0].finish_reason == {"eos": "stop", "stop": "stop", "length": "length"}[local.finish_reason]
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (local.prompt_tokens, local.new_tokens)
    assert r.model == "chat" and r.id.startswith("chatcmpl-")


def test_streaming_chat_equals_the_whole_reply(client):
    kwargs = {
        "model": "chat",
        "messages": [{"role": "user", "content": "Speak"}],
        "max_tokens": 24,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it did stream
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason
    ]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_batch_n_and_seeds(client):
    r = client.completions.create(
        model="base", prompt=["To be", "Romeo"], n=2, max_tokens=12, temperature=1.0, seed=7
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    again = client.completions.create(
        model="base", prompt=["To be", "Romeo"], n=2, max_tokens=12, temperature=1.0, seed=7
    )
    assert [c.text for c in r.choices] == [c.text for c in again.choices]  # a seed gives the same samples
    assert r.choices[0].text != r.choices[1].text  # the n samples of one prompt differ
    streamed = client.completions.create(
        model="base", prompt="To be", max_tokens=12, temperature=1.0, seed=7, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_models_route_lists_what_is_served(client, server, models):
    listed = {m.id: m for m in client.models.list()}
    assert set(listed) == {"chat", "base"}
    status, card = get_json(server + "/v1/models/chat")
    assert status == 200 and card["llmforge"]["chat_template"] is True
    assert str(models["chat"]) not in json.dumps(card)  # filesystem paths are the operator's business
    status, body = get_json(server + "/v1/models/nope")
    assert status == 404 and body["error"]["code"] == "model_not_found"


def test_sampling_values_are_clamped_and_the_response_says_so(server):
    status, body, headers = _post(server + "/v1/completions",
                                  {"model": "base", "prompt": "x", "max_tokens": 4, "temperature": 50, "top_k": 10**6})  # fmt: skip
    assert status == 200, body
    assert headers["x-llmforge-clamped"] == "temperature=2.0, top_k=1000"


# ------------------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize(
    "route, body, status, code_or_param",
    [
        ("/v1/chat/completions", b"{not json", 400, None),
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
            404,
            "model_not_found",
        ),
        (
            "/v1/chat/completions",
            {"model": "base", "messages": [{"role": "user", "content": "hi"}]},
            400,
            "no_chat_template",
        ),
        ("/v1/chat/completions", {"model": "chat", "messages": []}, 400, "messages"),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "robot", "content": "hi"}]},
            400,
            "messages.0.role",
        ),
        (
            "/v1/completions",
            {"model": "base", "prompt": "x", "max_tokens": MAX_TOKENS + 1},
            400,
            "max_tokens_exceeded",
        ),
        ("/v1/completions", {"model": "base", "prompt": "x", "logprobs": 2}, 400, "logprobs"),
        (
            "/v1/completions",
            {"model": "base", "prompt": "x", "frequency_penalty": 0.5},
            400,
            "frequency_penalty",
        ),
        ("/v1/completions", {"model": "base", "prompt": "x", "temperature": -1}, 400, "temperature"),
        ("/v1/completions", {"model": "base", "prompt": "x", "n": 5}, 400, "n"),
        (
            "/v1/completions",
            {"model": "base", "prompt": "x", "stop": [str(i) for i in range(9)]},
            400,
            "stop",
        ),
        ("/v1/completions", {"model": "base", "prompt": "x", "stop": "s" * 65}, 400, "stop"),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "hi", "name": "bob"}]},
            400,
            "messages.0.name",
        ),
        ("/v1/completions", {"model": "base", "prompt": "the " * 6000}, 413, "request_too_large"),
        (
            "/v1/completions",
            {"model": "base", "prompt": "the " * 480, "max_tokens": 100},
            400,
            "context_length_exceeded",
        ),
        ("/v1/completions", [1, 2], 400, None),
    ],
)
def test_bad_requests_get_an_openai_error_body(server, route, body, status, code_or_param):
    got, answer, _ = _post(server + route, body)
    assert got == status, answer
    error = answer["error"]
    assert error["message"] and error["type"]
    if code_or_param is not None:
        assert code_or_param in (error["code"], error["param"]), error
    assert "Traceback" not in json.dumps(answer)


def test_a_chunked_body_over_the_limit_is_refused(server):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for _ in range(30):
            s.sendall(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


def test_unknown_routes_and_methods_answer_json(server):
    status, body = get_json(server + "/v2/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = get_json(server + "/v1/completions")  # a GET where only POST is served
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


def test_a_keyless_server_answers_only_to_a_loopback_host_name(server):
    """A page on evil.example whose DNS now points at 127.0.0.1 (DNS rebinding) sends Host: evil.example."""
    for host, status in (("evil.example", 403), ("127.0.0.1.evil.example:80", 403), ("localhost:1", 200)):
        assert get_json(server + "/health", {"Host": host})[0] == status, host
    status, body = get_json(server + "/v1/models", {"Host": "evil.example"})
    assert body["error"]["code"] == "host_not_allowed"


def test_top_p_zero_is_greedy(client):
    kwargs = {"model": "base", "prompt": "To be", "max_tokens": 12}
    greedy = client.completions.create(**kwargs, temperature=0).choices[0].text
    assert client.completions.create(**kwargs, temperature=1.0, top_p=0, seed=3).choices[0].text == greedy


def test_overlapping_seeded_requests_each_give_their_own_samples(client):
    """Seeded requests share torch's generator, so they run one at a time: sent together, each seed still
    gives the text it gives alone."""
    kwargs = {"model": "base", "prompt": "Romeo", "max_tokens": 40, "temperature": 1.0}
    alone = {seed: client.completions.create(**kwargs, seed=seed).choices[0].text for seed in range(4)}
    together: dict[int, str] = {}

    def one(seed: int) -> None:
        together[seed] = client.completions.create(**kwargs, seed=seed).choices[0].text

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(4)]  # 1 runs, 3 wait (the limit)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == alone and len(set(alone.values())) > 1


def test_a_client_that_does_not_read_its_stream_holds_up_no_one(server):
    host, port = server.removeprefix("http://").split(":")
    body = json.dumps({"model": "base", "prompt": "To be", "max_tokens": MAX_TOKENS, "temperature": 0,
                       "stream": True})  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=60) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        slow.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())  # fmt: skip
        for i in range(3):  # others are answered while the slow client reads nothing
            status, answer, _ = _post(
                server + "/v1/completions", {"model": "base", "prompt": f"{i}", "max_tokens": 3}
            )
            assert status == 200 and answer["usage"]["completion_tokens"] >= 1
        received = b""
        while chunk := slow.recv(65536):  # and its stream is whole when it does read
            received += chunk
    assert received.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in received


# ------------------------------------------------------------------------------------------ load


def _health(server: str) -> dict:
    return get_json(server + "/health")[1]


def test_a_client_that_disconnects_has_its_generation_stopped(server):
    before = _health(server)
    host, port = server.removeprefix("http://").split(":")
    body = json.dumps(
        {"model": "base", "prompt": "To be", "max_tokens": MAX_TOKENS, "temperature": 1.0, "stream": True}
    )
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}".encode())  # fmt: skip
        seen = b""
        while b"data: " not in seen:  # the first tokens came: hang up
            chunk = s.recv(4096)
            assert chunk, seen
            seen += chunk
    deadline = time.monotonic() + 60
    while (now := _health(server))["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + 1
    assert now["new_tokens"] - before["new_tokens"] < MAX_TOKENS  # it stopped early, not at max_tokens
    ok = _post(server + "/v1/completions", {"model": "base", "prompt": "x", "max_tokens": 3})  # still serving
    assert ok[0] == 200


def test_concurrent_clients_are_all_answered_or_told_the_server_is_busy(server):
    """12 clients at once (half of them streaming) on 2 slots and 3 waiting places: every request gets 200 or
    503 server_busy with its JSON body (a refused stream too, before any event), at least the 5 that fit get
    200, some are refused, and every 200 holds its whole reply. Latencies go to the test log."""
    results: list[tuple[int, float, dict]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        start = time.perf_counter()
        body = {
            "model": "base",
            "prompt": f"Request {i}",
            "max_tokens": 120,
            "temperature": 0,
            "stream": i % 2 == 1,
        }
        status, answer = (
            _post_stream(server + "/v1/completions", body)
            if i % 2
            else _post(server + "/v1/completions", body)[:2]
        )
        with lock:
            results.append((status, time.perf_counter() - start, answer))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 12
    statuses = sorted(s for s, _, _ in results)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 5 and statuses.count(503) >= 1
    for status, _, body in results:
        if status == 503:
            assert body["error"]["code"] == "server_busy"
        elif "events" in body:
            assert body["events"][-1] == "[DONE]" and '"finish_reason": "length"' in body["events"][-2]
        else:
            assert body["usage"]["completion_tokens"] >= 1
    latencies = sorted(t for s, t, _ in results if s == 200)
    print(f"\n12 concurrent: {statuses.count(200)} answered, median {statistics.median(latencies):.2f} s, "
          f"max {latencies[-1]:.2f} s; {statuses.count(503)} told busy")  # fmt: skip
    assert _health(server)["refused_busy"] == statuses.count(503)


def test_slots_admit_a_request_whenever_one_is_free_and_an_exclusive_one_is_not_starved():
    import asyncio

    from llmforge.serve.limits import ServerLimits
    from llmforge.serve.models import ModelPool, Slots

    async def no_queue() -> int:  # --max-waiting 0: no waiting places, but a free slot still takes a request
        pool = ModelPool([], ServerLimits(parallel=1, max_waiting=0))
        try:
            return await (await pool.start(lambda: 7, exclusive=False))
        finally:
            pool.close()

    assert asyncio.run(no_queue()) == 7

    async def writer_waits_for_readers_then_goes_first() -> list[str]:
        slots, order = Slots(2), []
        await slots.acquire(False)  # a shared holder is running
        writer = asyncio.create_task(slots.acquire(True))
        await asyncio.sleep(0)
        late_reader = asyncio.create_task(slots.acquire(False))  # arrives after the writer: waits behind it
        await asyncio.sleep(0.01)
        order.append("reader admitted" if late_reader.done() else "reader waits")
        await slots.release()
        await writer
        order.append("writer")
        await slots.release()
        await late_reader
        order.append("reader")
        return order

    assert asyncio.run(writer_waits_for_readers_then_goes_first()) == ["reader waits", "writer", "reader"]


def test_a_client_that_leaves_while_queued_gives_up_its_place_at_once():
    """One slot, busy; a second request waits; its client disconnects: the wait ends within a poll (not when
    the slot frees), the request counts as cancelled, and the slot is still the first request's alone."""
    import asyncio

    from llmforge.serve.limits import ServerLimits
    from llmforge.serve.models import ClientGone, ModelPool

    release = threading.Event()

    async def scenario() -> tuple[float, dict, bool]:
        pool = ModelPool([], ServerLimits(parallel=1, max_waiting=4))
        try:
            first = await pool.start(lambda: release.wait(30), exclusive=False)
            left_at = time.monotonic() + 0.3

            async def gone() -> bool:
                return time.monotonic() > left_at

            started = time.monotonic()
            with pytest.raises(ClientGone):
                await pool.start(lambda: "never", exclusive=False, gone=gone)
            waited = time.monotonic() - started
            health = pool.health()
            release.set()
            return waited, health, await first
        finally:
            release.set()
            pool.close()

    waited, health, first_result = asyncio.run(scenario())
    assert waited < 2 and health["waiting"] == 0 and health["active"] == 1 and health["cancelled"] == 1
    assert first_result is True


# ------------------------------------------------------------------------------------------ start-up and auth


def _exit(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return e.value.code, capsys.readouterr().err


def test_start_up_mistakes_exit_2_before_loading(capsys, tmp_path, models):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    code, err = _exit(capsys, "serve", str(broken), "--port", str(free_port()))
    assert code == 2 and "broken" in err and "Traceback" not in err
    code, err = _exit(capsys, "serve", str(tmp_path / "missing"), "--port", str(free_port()))
    assert code == 2 and "missing" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, err = _exit(capsys, "serve", str(models["base"]), "--port", str(taken.getsockname()[1]))
    assert code == 2 and "already in use" in err
    code, err = _exit(capsys, "serve", str(models["base"]), "--host", "0.0.0.0")
    assert code == 2 and "--api-key" in err
    code, err = _exit(capsys, "serve", str(models["base"]), "--host", "127.0.0.2", "--api-key", "short")
    assert code == 2 and "8 characters" in err
    code, err = _exit(capsys, "serve", f"a={models['base']}", f"a={models['chat']}")
    assert code == 2 and "twice" in err


def test_beyond_loopback_every_route_wants_the_key(models, tmp_path):
    key = "sesame-1234"
    port = free_port("127.0.0.2")
    args = ["serve", f"base={models['base']}", "--api-key", key, "--device", "cpu"]
    auth = {"Authorization": f"Bearer {key}"}
    with running(args, "127.0.0.2", port, tmp_path / "auth.log", headers=auth) as base:
        for route in ("/health", "/v1/models", "/", "/nothing"):
            status, body = get_json(base + route)
            assert status == 401 and body["error"]["code"] == "invalid_api_key", route
        assert get_json(base + "/health", {"Authorization": "Bearer wrong-key"})[0] == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="wrong-key", max_retries=0).models.list()
        keyed = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        assert keyed.completions.create(model="base", prompt="x", max_tokens=2).choices[0].text is not None
        # a browser is sent to the key form, posts the key once (never in a URL); the cookie opens the pages
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(
            urllib.request.Request(base + "/review", headers={"Accept": "text/html"}), timeout=10
        ) as r:
            assert r.url.startswith(base + "/login?next=") and b'type="password"' in r.read()
        with opener.open(base + "/static/style.css", timeout=10) as r:  # the form's style needs no key
            assert r.status == 200
        form = f"key={key}&next=/v1/models".encode()
        with opener.open(base + "/login", data=form, timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["data"][0]["id"] == "base"
        assert _post(base + "/login", b"key=wrong-key&next=/")[0] == 401
        assert get_json(f"{base}/login?key={key}")[1]["error"]["code"] == "key_in_url"
        with opener.open(base + "/login", data=f"key={key}&next=//evil.example/".encode(), timeout=10) as r:
            assert r.url == base + "/"  # only a path of this site


def test_steer_applies_to_every_reply(models, client, tmp_path):
    """`serve --steer`: a word the model says unsteered is never said by the steered server."""
    kwargs = {"model": "base", "prompt": "To be, or not to be", "max_tokens": 30, "temperature": 0}
    plain = client.completions.create(**kwargs).choices[0].text
    words = [w for w in plain.split() if w.isalpha()]
    word = max(set(words), key=words.count)  # the word it says most
    steer = tmp_path / "steer.toml"
    steer.write_text(f"banned_words = [{json.dumps(word)}]\n")
    port = free_port()
    args = ["serve", f"base={models['base']}", "--steer", str(steer), "--device", "cpu"]
    with running(args, "127.0.0.1", port, tmp_path / "steer.log") as base:
        steered = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        text = steered.completions.create(**kwargs).choices[0].text
    assert word not in text.split() and text != plain


def test_an_internal_error_tells_the_client_an_id_not_the_exception():
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from llmforge.serve.errors import install_handlers

    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("/secret/path/to/checkpoint is corrupt")

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert "secret" not in message and "RuntimeError" not in message and "error " in message
