"""`llmforge review`: the store (SQLite; exports rlhf and `eval ratings` read), its inputs, and the pages driven
in a real headless Chromium (Debian's chromium + chromium-driver, through selenium) against a live server —
label 5 pairs by keyboard, reload, resume, and the preference file holds exactly those 5 rows; an expert
rating lands in the reviewer's sheet. Many concurrent clients lose and duplicate nothing. Screenshots of each
page go to test-artifacts/review/ (or $LLMFORGE_TEST_ARTIFACTS)."""

from __future__ import annotations

import csv
import json
import os
import statistics
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA
from serving import free_port, get_json, running

from llmforge.cli import main
from llmforge.console import UserError
from llmforge.serve.review.items import read_inputs
from llmforge.serve.review.store import PREFERENCES, InvalidSubmission, ReviewStore

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("LLMFORGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "review"
N_PAIRS = 8


def _pairs_file(path: Path, n: int = N_PAIRS) -> Path:
    rows = [{"prompt": f"Question {i}: what rhymes with {w}?", "completion_a": f"{w}-a reply {i}",
             "completion_b": f"{w}-b reply {i}", "model_a": "sft", "model_b": "dpo"}
            for i, w in enumerate(["cat", "dog", "sun", "moon", "tree", "sea", "sky", "rain", "star", "leaf"][:n])]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sheet(path: Path, n: int = 3) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "output", "rating", "comment"])
        for i in range(n):
            w.writerow([f"q{i}", f"Add {i} and {i}.", f"{i} + {i} = {3 * i}", "", ""])
    return path


def _store(tmp_path: Path, *inputs: Path) -> ReviewStore:
    found = read_inputs(list(inputs))
    store = ReviewStore(tmp_path / "out")
    store.add_items(found.pairs + found.samples)
    return store


# ------------------------------------------------------------------------------------------ store


def test_labels_export_the_pairs_rlhf_reads_with_labeller_and_models(tmp_path):
    from llmforge.rlhf.config import PreferenceSource
    from llmforge.rlhf.preferences import read_pairs

    store = _store(tmp_path, _pairs_file(tmp_path / "pairs.jsonl"))
    first = store.next_item("pair", "alice")["item"]
    store.label(first["id"], "alice", "b", "clearer", left=first["left"]["key"])
    second = store.next_item("pair", "alice")["item"]
    assert second["id"] != first["id"]
    store.label(second["id"], "alice", "tie")
    store.label(store.next_item("pair", "alice")["item"]["id"], "alice", "a")
    rows = [json.loads(line) for line in (tmp_path / "out" / PREFERENCES).read_text().splitlines()]
    assert len(rows) == 2  # the tie is in the store, not among the pairs
    assert rows[0]["chosen"] == "cat-b reply 0" and rows[0]["rejected"] == "cat-a reply 0"
    assert (rows[0]["labeller"], rows[0]["model_chosen"], rows[0]["model_rejected"], rows[0]["reason"]) == (
        "alice", "dpo", "sft", "clearer")  # fmt: skip
    pairs, stats = read_pairs(PreferenceSource(path=str(tmp_path / "out" / PREFERENCES)))
    assert stats["format"] == "pairs" and len(pairs) == 2
    assert pairs[0].chosen == "cat-b reply 0" and pairs[0].prompt_text.startswith("Question 0")


def test_a_second_label_replaces_the_first_and_a_restart_keeps_everything(tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    store = _store(tmp_path, pairs)
    item = store.next_item("pair", "bob")["item"]["id"]
    store.label(item, "bob", "a")
    store.label(item, "bob", "b")  # a double submission or a change of mind: one row
    store.close()
    again = _store(tmp_path, pairs)  # the same inputs reopened: no new items, the label kept
    assert again.count("pair") == N_PAIRS
    summary = again.summary()["pairs"]
    assert summary["labels"] == 1 and summary["choices"]["b"] == 1
    assert again.next_item("pair", "bob")["done"] == 1


def test_agreement_between_labellers(tmp_path):
    store = _store(tmp_path, _pairs_file(tmp_path / "pairs.jsonl", 4))
    ids = [store.next_item("pair", "zed")["item"]["id"]]
    order = []
    while (nxt := store.next_item("pair", "carol")["item"]) is not None:
        order.append(nxt["id"])
        store.label(nxt["id"], "carol", "a")
    for i, choice in zip(order, ["a", "a", "a", "b"], strict=True):
        store.label(i, "dave", choice)
    agreement = store.summary()["pairs"]["agreement"]
    assert agreement["items"] == 4 and agreement["percent"] == 0.75
    # Krippendorff's alpha (nominal) by hand: 8 values, 7 "a" and 1 "b"; one disagreeing unit
    # D_o = 2/8, D_e = 2*7*1/(8*7) = 1/4 → alpha = 1 - (2/8)/(1/4) = 0
    assert agreement["krippendorff_alpha"] == pytest.approx(0.0)
    assert ids  # zed saw an item without labelling it: no label counted
    assert "zed" not in store.summary()["pairs"]["per_labeller"]


def test_ratings_export_the_sheets_eval_ratings_reads(tmp_path, capsys):
    store = _store(tmp_path, _sheet(tmp_path / "sheet.csv"))
    for person, ratings in (("erin", [4, 2, 5]), ("frank", [4, 3, 5])):
        for rating in ratings:
            item = store.next_item("sample", person)["item"]
            store.rate(
                item["id"], person, rating, correction=item["output"] + " (fixed)", reasoning="checked it"
            )
    sheet = tmp_path / "out" / "ratings" / "erin.csv"
    rows = list(csv.DictReader(sheet.open()))
    assert [r["rating"] for r in rows] == ["4", "2", "5"] and rows[0]["comment"] == "checked it"
    assert rows[1]["correction"] == "1 + 1 = 3 (fixed)"
    with pytest.raises(SystemExit) as e:
        main(["eval", "ratings", str(sheet), str(tmp_path / "out" / "ratings" / "frank.csv"), "--json"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["raters"] == ["erin", "frank"] and summary["ratings"] == 6
    assert store.summary()["samples"]["agreement"]["krippendorff_alpha"] == pytest.approx(
        summary["krippendorff_alpha"]
    )


def test_two_sheets_with_the_same_row_ids_stay_apart_in_eval_ratings(tmp_path, capsys):
    (tmp_path / "sft").mkdir()
    (tmp_path / "dpo").mkdir()
    store = _store(tmp_path, _sheet(tmp_path / "sft" / "sft.csv", 1), _sheet(tmp_path / "dpo" / "dpo.csv", 1))
    for rating in (2, 5):
        store.rate(store.next_item("sample", "erin")["item"]["id"], "erin", rating)
    with pytest.raises(SystemExit):
        main(["eval", "ratings", str(tmp_path / "out" / "ratings" / "erin.csv"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 2 and summary["mean"] == 3.5


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda s, i: s.label(i, "alice", "maybe"), "choice 'maybe'"),
        (lambda s, i: s.label(i, "../etc", "a"), "labeller '../etc'"),
        (lambda s, i: s.label("nope", "alice", "a"), "no such pair"),
        (lambda s, i: s.rate(i, "alice", 3), "no such sample"),  # a pair is not rated
    ],
)
def test_bad_submissions_are_refused(tmp_path, call, phrase):
    store = _store(tmp_path, _pairs_file(tmp_path / "pairs.jsonl"))
    with pytest.raises(InvalidSubmission, match=phrase):
        call(store, store.next_item("pair", "alice")["item"]["id"])


def test_inputs_candidates_directories_and_bad_files(tmp_path):
    round_dir = tmp_path / "run" / "rounds" / "round-2"
    round_dir.mkdir(parents=True)
    (round_dir / "candidates.jsonl").write_text(json.dumps({
        "split": "train", "prompt": "Say hi", "messages": [{"role": "user", "content": "Say hi"}],
        "reply_a": "hi", "reply_b": "hello", "origin": "p.jsonl:3"}) + "\n")  # fmt: skip
    _sheet(tmp_path / "run" / "sheet.csv", 2)
    (tmp_path / "run" / "other.csv").write_text("a,b\n1,2\n")  # not a review sheet: left alone
    found = read_inputs([tmp_path / "run"])
    assert len(found.pairs) == 1 and len(found.samples) == 2
    assert found.pairs[0].data["messages"] == [{"role": "user", "content": "Say hi"}]
    bad = tmp_path / "bad.jsonl"
    for text, phrase in [
        ('{"completion_a": "x"}\n', "must both be strings"),
        ('{"prompt": ["hi"], "completion_a": "x", "completion_b": "y"}\n', "list of {role, content}"),
        ('{"prompt": "p", "reply_a": "x", "reply_b": "y", "messages": 3}\n', "'messages'"),
        ('{"text": "x"}\n', "expected reply_a/reply_b"),
        ("not json\n", "bad.jsonl:1"),
        ("", "empty"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserError, match=phrase):
            read_inputs([bad])
    bad.write_text('{"prompt": "p", "reply_a": "x", "reply_b": "y", "policy": null}\n')  # no policy named
    assert read_inputs([bad]).pairs[0].data["a"]["model"] == "policy:sample-1"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no candidates.jsonl"):
        read_inputs([tmp_path / "empty"])


def test_cli_refuses_bad_starts(tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("Say hi\n")
    for argv, phrase in [
        (["review", str(tmp_path / "missing.jsonl")], "no such file"),
        (["review", str(tmp_path / "prompts.txt")], "--model"),
        (
            ["review", str(_pairs_file(tmp_path / "p.jsonl")), "--rubric", str(tmp_path / "nope.md")],
            "--rubric",
        ),
        (["review", str(tmp_path / "p.jsonl"), "--host", "0.0.0.0"], "--api-key"),
        (["review", str(tmp_path / "prompts.txt"), "--model", "x", "--temperature", "0"], "greedy"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv + ["--port", str(free_port())])
        err = capsys.readouterr().err
        assert e.value.code == 2 and phrase in err, (argv, err)


# ------------------------------------------------------------------------------------------ live: browser and load


@pytest.fixture(scope="module")
def review_server(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    from eval_tiny_model import build_tiny_model
    from serving import build_chat_model

    root = tmp_path_factory.mktemp("review")
    chat = build_chat_model(
        build_tiny_model(root / "tiny", SHARED_DATA / "tinyshakespeare" / "input.txt"), root / "chat"
    )
    pairs, sheet = _pairs_file(root / "pairs.jsonl"), _sheet(root / "sheet.csv")
    out = root / "out"
    args = ["review", str(pairs), str(sheet), "--model", f"sft={chat}", "--out", str(out), "--device", "cpu"]
    with running(args, "127.0.0.1", free_port(), root / "review.log") as base:
        yield base, out


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip(
            f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}): apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-gpu",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


@pytest.mark.slow
def test_label_five_pairs_by_keyboard_reload_resume(review_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, out = review_server
    browser.get(base + "/review")
    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "start").click()
    _wait(
        browser,
        lambda d: d.current_url.endswith("/review/pairs") and "of 8 labelled" in _text(d, "#progress"),
    )
    browser.save_screenshot(str(ARTIFACTS / "pairs.png"))
    expected = []
    for n, key in enumerate("abbab"):
        _wait(browser, lambda d, n=n: _text(d, "#progress").startswith(f"{n} of"))
        left, right = _text(browser, "#left-text"), _text(browser, "#right-text")
        if n == 1:  # a reason typed with the letters of the shortcuts does not trigger them
            box = browser.find_element(By.ID, "reason")
            box.send_keys("a better rhyme, but both are bad")
            box.send_keys(Keys.ESCAPE)
        _press(browser, key)
        expected.append((left if key == "a" else right, right if key == "a" else left))
    _wait(browser, lambda d: _text(d, "#progress").startswith("5 of 8"))
    shown_sixth = _text(browser, "#prompt")
    browser.refresh()  # reload: the page resumes at the sixth pair
    _wait(browser, lambda d: _text(d, "#progress").startswith("5 of 8") and _text(d, "#prompt"))
    assert _text(browser, "#prompt") == shown_sixth
    rows = [json.loads(line) for line in (out / PREFERENCES).read_text().splitlines() if '"alice"' in line]
    assert [(r["chosen"], r["rejected"]) for r in rows] == expected
    assert len(rows) == 5 and {r["labeller"] for r in rows} == {"alice"}
    assert rows[1]["reason"] == "a better rhyme, but both are bad"
    _press(browser, "t")  # a tie is stored, but is not a preference row
    _wait(browser, lambda d: _text(d, "#progress").startswith("6 of 8"))
    assert sum('"alice"' in line for line in (out / PREFERENCES).read_text().splitlines()) == 5
    browser.get(base + "/review")
    _wait(browser, lambda d: "alice" in _text(d, "#pairs-summary"))
    browser.save_screenshot(str(ARTIFACTS / "overview.png"))


@pytest.mark.slow
def test_the_name_page_goes_only_to_paths_of_this_site(review_server, browser):
    from selenium.webdriver.common.by import By

    base, _ = review_server
    for asked in ("javascript:document.title='pwned'", "//example.com/x", "/\\example.com/x"):
        browser.get(base + "/review?next=" + urllib.parse.quote(asked))
        browser.find_element(By.ID, "name").clear()
        browser.find_element(By.ID, "name").send_keys("heidi")
        browser.find_element(By.ID, "start").click()
        _wait(browser, lambda d: d.current_url == base + "/review/pairs")
        assert browser.title != "pwned"
    browser.get(base + "/review?next=/review/expert")
    browser.find_element(By.ID, "start").click()
    _wait(browser, lambda d: d.current_url == base + "/review/expert")


@pytest.mark.slow
def test_expert_review_writes_a_rating_with_correction_and_reasoning(review_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, out = review_server
    browser.get(base + "/review")
    browser.execute_script("localStorage.setItem('llmforge.person', 'grace')")
    browser.get(base + "/review/expert")
    _wait(browser, lambda d: _text(d, "#progress").startswith("0 of 3") and _text(d, "#output"))
    assert "Rate how well" in _text(browser, "#rubric")
    _press(browser, "4")
    _wait(browser, lambda d: "on" in d.find_element(By.ID, "rate-4").get_attribute("class"))
    correction = browser.find_element(By.ID, "correction")
    correction.clear()
    correction.send_keys("0 + 0 = 0")
    browser.find_element(By.ID, "reasoning").send_keys("I added the numbers myself; 3·0 happens to be right.")
    browser.save_screenshot(str(ARTIFACTS / "expert.png"))
    browser.find_element(By.ID, "reasoning").send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(browser, lambda d: _text(d, "#progress").startswith("1 of 3"))
    rows = list(csv.DictReader((out / "ratings" / "grace.csv").open()))
    assert len(rows) == 1
    assert (rows[0]["id"], rows[0]["rating"], rows[0]["correction"]) == ("sheet.csv:q0", "4", "0 + 0 = 0")
    assert rows[0]["comment"].startswith("I added the numbers")


@pytest.mark.slow
def test_playground_streams_a_reply(review_server, browser):
    from selenium.webdriver.common.by import By

    base, _ = review_server
    browser.get(base + "/")
    _wait(browser, lambda d: _text(d, "#title-1").startswith("sft"))
    browser.find_element(By.ID, "max-tokens").clear()
    browser.find_element(By.ID, "max-tokens").send_keys("16")
    browser.find_element(By.ID, "message").send_keys("To be, or not to be")
    browser.find_element(By.ID, "send").click()
    _wait(
        browser,
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#log-1 .msg")) == 2
            and not d.find_element(By.ID, "send").get_attribute("disabled")
        ),
    )
    assert _text(browser, "#status") == ""
    assert browser.find_elements(By.CSS_SELECTOR, "#log-1 .msg .text")[0].text == "To be, or not to be"
    browser.save_screenshot(str(ARTIFACTS / "playground.png"))


@pytest.mark.slow
def test_concurrent_labellers_lose_and_duplicate_nothing(review_server):
    """16 clients at once, each labelling every pair (and submitting some twice): the store ends with exactly
    one label per (pair, person) and the preference file with one row per A/B decision."""
    base, out = review_server
    people = [f"load{i:02d}" for i in range(16)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def post(path: str, body: dict) -> None:
        start = time.perf_counter()
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                assert r.status == 200
        except Exception as e:  # noqa: BLE001 - gathered and asserted below
            with lock:
                errors.append(repr(e))
        with lock:
            latencies.append(time.perf_counter() - start)

    def labeller(i: int, person: str) -> None:
        done = 0
        while True:
            status, nxt = get_json(f"{base}/review/api/next?kind=pair&person={person}")
            item = nxt["item"]
            if item is None:
                break
            choice = "ab"[(i + done) % 2] if done % 4 else "tie"
            for _ in range(2 if done == 1 else 1):  # the second pair is submitted twice
                post(
                    "/review/api/label",
                    {"item": item["id"], "labeller": person, "choice": choice, "left": item["left"]["key"]},
                )
            done += 1

    threads = [threading.Thread(target=labeller, args=(i, p)) for i, p in enumerate(people)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.perf_counter() - start
    assert not errors, errors[:3]
    summary = get_json(base + "/review/api/progress")[1]["pairs"]
    assert all(summary["per_labeller"][p] == N_PAIRS for p in people)
    rows = [json.loads(line) for line in (out / PREFERENCES).read_text().splitlines()]
    load_rows = [(r["item"], r["labeller"]) for r in rows if r["labeller"].startswith("load")]
    assert (
        len(load_rows) == len(set(load_rows)) == 16 * (N_PAIRS - 2)
    )  # pairs 0 and 4 of each person are ties
    latencies.sort()
    print(f"\n16 labellers, {len(latencies)} submissions in {elapsed:.1f} s: median {1000 * statistics.median(latencies):.0f} ms, "
          f"p95 {1000 * latencies[int(0.95 * len(latencies))]:.0f} ms")  # fmt: skip
