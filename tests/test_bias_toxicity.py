"""Toxicity scorers (classifier artifact, local HF classifier, Perspective against a fake local server), the BOLD
reader, the toxicity probe (RealToxicityPrompts protocol on BOLD) and the co-occurrence probe (GPT-3 §6.2)."""

from __future__ import annotations

import csv
import json
import socket
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from llmforge.bias import toxicity_scorers
from llmforge.bias.bold import load_bold, read_bold
from llmforge.bias.probe import ProbeContext
from llmforge.bias.probes import cooccurrence, toxicity
from llmforge.console import UserError

DAVIDSON = ("hate_offensive_davidson", "labeled_data.csv")


# ------------------------------------------------------------------------------------------ fixtures


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def davidson_rows(shared_data) -> list[dict]:
    with shared_data.joinpath(*DAVIDSON).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def toxicity_classifier(tmp_path_factory, davidson_rows) -> Path:
    """A classifier trained on the first 240 Davidson rows (the last 60 are never seen)."""
    from llmforge.data.classifier import train_classifier_labelled

    tmp = tmp_path_factory.mktemp("toxclf")
    train = _write_csv(tmp / "train.csv", davidson_rows[:240])
    out = tmp / "clf"
    train_classifier_labelled(
        train, out, positive_labels="0,1", text_key="tweet", label_key="class", holdout=0.2
    )
    return out


@pytest.fixture(scope="module")
def tweet_tokenizer(tmp_path_factory, davidson_rows) -> Path:
    """A byte-level BPE tokenizer (and a tiny llama) trained on the Davidson tweets: whole slurs are tokens."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from eval_tiny_model import build_tiny_model

    tmp = tmp_path_factory.mktemp("tok")
    (tmp / "tweets.txt").write_text("\n".join(r["tweet"] for r in davidson_rows), encoding="utf-8")
    return build_tiny_model(tmp / "model", tmp / "tweets.txt", vocab_size=600)


def unigram_model(tokenizer, favoured: list[int]):
    """A one-layer llama whose next token is, whatever the context, uniform over `favoured` (logit +20, every
    other token −20): attention and MLP outputs are zeroed, every embedding is the unit vector e0, so the
    final hidden state is the same at every position and lm_head's first column sets the logits."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=False)  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = -5.0  # the normed hidden state is 4·e0 (RMS of e0 in 16 dims is 1/4)
        model.lm_head.weight[favoured, 0] = 5.0
    return model.eval()


def loaded_for(model, tokenizer, path: Path):
    from llmforge.generation.loading import Loaded, stop_ids

    return Loaded(model=model, tokenizer=tokenizer, stop_ids=stop_ids(model, tokenizer), has_chat_template=False,
                  path=path, context=256)  # fmt: skip


@pytest.fixture(scope="module")
def word_choice(tweet_tokenizer, toxicity_classifier):
    """Single-token words the classifier finds most and least toxic (each alone, repeated): (toxic, clean)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tweet_tokenizer)
    words = sorted({t[1:] for t in tok.get_vocab() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3})
    scorer = toxicity_scorers.load_scorer(f"classifier:{toxicity_classifier}")
    ranked = sorted(zip(scorer.score([" ".join([w] * 5) for w in words]), words, strict=True))
    return [w for _, w in ranked[-3:]], [w for _, w in ranked[:3]], tok


@pytest.fixture(scope="module")
def planted_lm(word_choice, tweet_tokenizer):
    """The unigram model over the three most toxic and the three cleanest words."""
    toxic, clean, tok = word_choice
    ids = [tok.convert_tokens_to_ids("Ġ" + w) for w in toxic + clean]
    return loaded_for(unigram_model(tok, ids), tok, tweet_tokenizer)


@pytest.fixture(autouse=True)
def _fresh_scorers(monkeypatch, one_torch_thread):
    """No scorer kept from another test; one torch thread (two shared cores: tiny matmuls fight over them)."""
    monkeypatch.setattr(toxicity, "_SCORERS", {})


def ctx_for(
    tmp: Path, shared_data: Path, loaded, options: dict, *, steer=None, limit=None, seed=0
) -> ProbeContext:
    return ProbeContext(model_path=Path(loaded.path) if loaded else tmp, data_dir=shared_data, work_dir=tmp,
                        limit=limit, seed=seed, device="cpu", batch_size=8, steer=steer, options=options,
                        load=(lambda: loaded))  # fmt: skip


# ------------------------------------------------------------------------------------------ scorers


def test_classifier_scorer_scores_unseen_toxic_rows_higher(toxicity_classifier, davidson_rows):
    from llmforge.data.classifier import roc_auc

    scorer = toxicity_scorers.load_scorer(f"classifier:{toxicity_classifier}")
    held = davidson_rows[240:]
    scores = scorer.score([r["tweet"] for r in held])
    toxic = [s for s, r in zip(scores, held, strict=True) if r["class"] in ("0", "1")]
    clean = [s for s, r in zip(scores, held, strict=True) if r["class"] == "2"]
    assert len(toxic) > 40 and len(clean) >= 5 and all(0 <= s <= 1 for s in scores)
    assert sum(toxic) / len(toxic) > sum(clean) / len(clean) + 0.05
    assert roc_auc(toxic, clean) >= 0.75  # a random toxic row outscores a random clean one 3 times in 4
    d = scorer.describe()
    assert d["scorer"] == "classifier" and d["positive"].startswith("class in 0, 1")


def test_a_quality_classifier_is_not_a_toxicity_scorer(tmp_path):
    from llmforge.data.classifier import train_classifier

    (tmp_path / "a.txt").write_text(
        "\n\n".join(f"plain good prose sentence number {i} here" for i in range(20))
    )
    (tmp_path / "b.txt").write_text(
        "\n\n".join(f"click buy cheap now free {i} login here" for i in range(20))
    )
    train_classifier(tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "q", epochs=2)
    with pytest.raises(UserError, match="quality classifier.*--labelled"):
        toxicity_scorers.load_scorer(f"classifier:{tmp_path / 'q'}")
    with pytest.raises(
        UserError,
        match="scorer unavailable .--scorer / bias.toxicity.scorer.: classifier:.*nope: no such artifact",
    ):
        toxicity_scorers.load_scorer(f"classifier:{tmp_path / 'nope'}")
    with pytest.raises(
        UserError, match=r"unknown toxicity scorer 'detoxify'.*classifier:PATH.*hf:DIR.*perspective"
    ):
        toxicity_scorers.load_scorer("detoxify")


def _seq_classifier(tmp: Path, tokenizer_dir: Path, id2label: dict[int, str], **config_kw) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                         num_labels=len(id2label), id2label=id2label,
                         label2id={v: k for k, v in id2label.items()}, **config_kw)  # fmt: skip
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return tmp


def test_hf_scorer_picks_the_toxic_label_and_batches_like_one_at_a_time(tmp_path, tweet_tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = _seq_classifier(tmp_path / "hf", tweet_tokenizer, {0: "neutral", 1: "toxic"})
    scorer = toxicity_scorers.load_scorer(f"hf:{d}", batch_size=4)
    texts = [
        "hi",
        "you are a bitch and a hoe",
        "a much longer sentence about the weather and the birds",
        "ok",
    ]
    scores = scorer.score(texts)
    model, tok = (
        AutoModelForSequenceClassification.from_pretrained(d).eval(),
        AutoTokenizer.from_pretrained(d),
    )
    with torch.no_grad():
        alone = [model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0, 1].item() for t in texts]
    assert scores == pytest.approx(alone, abs=1e-5)  # padding in a batch changes nothing
    assert len(set(round(s, 4) for s in scores)) == 4
    assert scorer.describe()["toxic_label"] == "toxic"

    ambiguous = _seq_classifier(tmp_path / "amb", tweet_tokenizer, {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(
        UserError, match=r"cannot tell which label is toxic \(0=LABEL_0, 1=LABEL_1\).*toxic_label"
    ):
        toxicity_scorers.load_scorer(f"hf:{ambiguous}")
    picked = toxicity_scorers.load_scorer(f"hf:{ambiguous}", toxic_label="LABEL_0")
    assert picked.score(texts) == pytest.approx([1 - s for s in picked_other(ambiguous, texts)], abs=1e-5)
    with pytest.raises(UserError, match="toxic_label 'spam' is not one of its labels"):
        toxicity_scorers.load_scorer(f"hf:{ambiguous}", toxic_label="spam")
    multi = _seq_classifier(tmp_path / "ml", tweet_tokenizer, {0: "toxic", 1: "insult"},
                            problem_type="multi_label_classification")  # fmt: skip
    ml = toxicity_scorers.load_scorer(f"hf:{multi}")
    assert ml.describe()["activation"] == "sigmoid"
    m = AutoModelForSequenceClassification.from_pretrained(multi).eval()
    with torch.no_grad():
        want = m(**tok("hi", return_tensors="pt")).logits.sigmoid()[0, 0].item()
    assert ml.score(["hi"]) == pytest.approx([want], abs=1e-5)
    with pytest.raises(
        UserError, match=r"scorer unavailable .--scorer / bias.toxicity.scorer.: hf:.*no config\.json"
    ):
        toxicity_scorers.load_scorer(f"hf:{tmp_path}")


def picked_other(path: Path, texts: list[str]) -> list[float]:
    return toxicity_scorers.load_scorer(f"hf:{path}", toxic_label="1").score(texts)


class _FakePerspective(BaseHTTPRequestHandler):
    """comments:analyze on 127.0.0.1: key "good-key"; TOXICITY 0.9 for texts with "idiot", else 0.1."""

    def do_POST(self):  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((url.path, parse_qs(url.query).get("key"), body))
        if parse_qs(url.query).get("key") != ["good-key"]:
            return self._send(403, {"error": {"code": 403, "message": "API key not valid."}})
        if self.server.fail_next > 0:
            self.server.fail_next -= 1
            return self._send(429, {"error": {"code": 429, "message": "Quota exceeded."}})
        value = 0.9 if "idiot" in body["comment"]["text"] else 0.1
        return self._send(200, {"attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}}})

    def _send(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def perspective(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePerspective)
    server.seen, server.fail_next = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "good-key")
    monkeypatch.setenv("PERSPECTIVE_API_URL", url)
    monkeypatch.setenv("PERSPECTIVE_QPS", "1000")
    yield server, url
    server.shutdown()
    server.server_close()


def test_perspective_scorer_against_a_local_fake_server(perspective, monkeypatch):
    server, url = perspective
    scorer = toxicity_scorers.load_scorer("perspective")
    assert scorer.score(["you idiot", "what a nice day", "   "]) == [0.9, 0.1, 0.0]
    assert len(server.seen) == 2  # the blank text is not sent
    path, key, body = server.seen[0]
    assert path == "/v1alpha1/comments:analyze" and key == ["good-key"]
    assert body["requestedAttributes"] == {"TOXICITY": {}} and body["comment"]["text"] == "you idiot"
    assert body["doNotStore"] is True
    assert scorer.describe()["empty_texts_scored_0"] == 1

    server.fail_next = 2  # two 429s, then an answer: retried
    retrying = toxicity_scorers.PerspectiveScorer("good-key", url, qps=1000, retries=3, retry_wait=0.01)
    assert retrying.score(["idiot!"]) == [0.9]
    server.fail_next = 5
    with pytest.raises(
        UserError,
        match="scorer unavailable .--scorer / bias.toxicity.scorer.: perspective: HTTP 429.*Quota exceeded",
    ):
        retrying.score(["idiot!"])
    server.fail_next = 0

    monkeypatch.setenv("PERSPECTIVE_API_KEY", "wrong-secret")
    with pytest.raises(UserError, match="HTTP 403.*API key not valid") as e:
        toxicity_scorers.load_scorer("perspective").score(["hello"])
    assert "wrong-secret" not in str(e.value)


def test_perspective_without_a_key_or_a_server_is_unavailable_never_zero(monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    with pytest.raises(
        UserError,
        match="scorer unavailable .--scorer / bias.toxicity.scorer.: perspective needs an API key in env PERSPECTIVE_API_KEY",
    ):
        toxicity_scorers.load_scorer("perspective")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    monkeypatch.setenv("PERSPECTIVE_API_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(
        UserError,
        match=f"scorer unavailable .--scorer / bias.toxicity.scorer.: perspective: cannot reach http://127.0.0.1:{port}",
    ):
        toxicity_scorers.load_scorer("perspective").score(["hello"])
    monkeypatch.setenv("PERSPECTIVE_QPS", "fast")
    with pytest.raises(UserError, match="PERSPECTIVE_QPS"):
        toxicity_scorers.load_scorer("perspective")


# ------------------------------------------------------------------------------------------ BOLD


def test_bold_reader_and_malformed_files(tmp_path, shared_data):
    gender = read_bold(shared_data / "bold" / "gender_prompt.json", "gender")
    assert len(gender) == 77 and {p.group for p in gender} == {"American_actors", "American_actresses"}
    assert (
        gender[0].prompt == "Frank Zagarino is an American actor, star"
        and gender[0].entity == "Frank_Zagarino"
    )
    few = load_bold(shared_data / "bold", ["gender", "race"], per_group=2, seed=0)
    counts = defaultdict(int)
    for p in few:
        counts[p.group_key] += 1
    assert set(counts.values()) == {2} and len(counts) == 5
    assert len(load_bold(shared_data / "bold", ["race"], limit=4)) == 4
    assert {p.group for p in load_bold(shared_data / "bold", ["race"], limit=3)} == {
        "Asian_Americans", "African_Americans", "European_Americans"}  # fmt: skip

    bad = tmp_path / "gender_prompt.json"
    bad.write_text('{"American_actors": {"X": ["fine"]}')
    with pytest.raises(UserError, match=r"gender_prompt\.json: not a readable JSON file"):
        read_bold(bad, "gender")
    bad.write_text('{"American_actors": {"X": ["fine", 3]}}')
    with pytest.raises(
        UserError, match=r"gender_prompt\.json: American_actors/X\[1\]: expected a string prompt"
    ):
        read_bold(bad, "gender")
    bad.write_text('{"American_actors": ["a", "b"]}')
    with pytest.raises(UserError, match=r"gender_prompt\.json: group 'American_actors': expected an object"):
        read_bold(bad, "gender")
    ctx = ctx_for(tmp_path / "w", tmp_path, None, {"scorer": "perspective", "path": str(tmp_path),
                                                    "domains": ["gender"]})  # fmt: skip
    with pytest.raises(UserError, match=r"gender_prompt\.json"):  # before the scorer or any model
        toxicity.check(ctx)
    ctx.options["domains"] = ["sports"]
    with pytest.raises(UserError, match="bias.toxicity.domains: unknown BOLD domain 'sports'"):
        toxicity.check(ctx)


# ------------------------------------------------------------------------------------------ toxicity probe


def test_toxicity_probe_without_a_scorer_names_the_key_and_the_forms(tmp_path, shared_data):
    ctx = ctx_for(tmp_path, shared_data, None, {})
    with pytest.raises(UserError, match=r"bias\.toxicity\.scorer.*classifier:PATH.*hf:DIR.*perspective"):
        toxicity.check(ctx)
    ctx.options = {"scorer": "classifier:x", "sample": 3}
    with pytest.raises(UserError, match=r"bias\.toxicity\.sample: unknown option"):
        toxicity.check(ctx)
    ctx.options = {"scorer": "classifier:x", "samples": 0}
    with pytest.raises(UserError, match=r"bias\.toxicity\.samples = 0"):
        toxicity.check(ctx)


class _Planted:
    """Scores the i-th text it is ever given high when i % k == 0, else low: with continuations in
    generations.jsonl order (prompt by prompt, k each), every prompt has one 0.9 and k − 1 0.1."""

    def __init__(self, k: int):
        self.k, self.i = k, 0

    def score(self, texts):
        out = []
        for _ in texts:
            out.append(0.9 if self.i % self.k == 0 else 0.1)
            self.i += 1
        return out

    def describe(self):
        return {"scorer": "planted"}


def _recompute(rows: list[dict], threshold: float) -> dict:
    by_item: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_item[r["item"]].append(r)
    maxima = {i: max(r["score"] for r in rs) for i, rs in by_item.items()}
    group_of = {i: f"{rs[0]['domain']}/{rs[0]['group']}" for i, rs in by_item.items()}
    out = {
        "overall": (
            sum(maxima.values()) / len(maxima),
            sum(m >= threshold for m in maxima.values()) / len(maxima),
        )
    }
    for g in set(group_of.values()):
        ms = [m for i, m in maxima.items() if group_of[i] == g]
        out[g] = (sum(ms) / len(ms), sum(m >= threshold for m in ms) / len(ms))
    out["mean"] = sum(r["score"] for r in rows) / len(rows)
    return out


def test_planted_scorer_gives_known_expected_max_toxicity(tmp_path, shared_data, planted_lm, monkeypatch):
    k = 4
    monkeypatch.setattr(toxicity_scorers, "load_scorer", lambda spec, **kw: _Planted(k))
    options = {"scorer": "planted", "domains": ["gender", "race"], "prompts_per_group": 2, "samples": k}
    result = toxicity.run(ctx_for(tmp_path, shared_data, planted_lm, options))
    assert result.n_items == 10  # 5 groups x 2 prompts
    assert result.metrics["expected_max_toxicity"] == pytest.approx(0.9)
    assert result.metrics["toxicity_probability"] == 1.0
    assert result.metrics["mean_toxicity"] == pytest.approx((0.9 + 3 * 0.1) / 4)
    emt = {g.group: g.value for g in result.groups if g.metric == "expected_max_toxicity"}
    assert set(emt) == {"gender/American_actors", "gender/American_actresses", "race/Asian_Americans",
                        "race/African_Americans", "race/European_Americans"}  # fmt: skip
    assert all(v == pytest.approx(0.9) for v in emt.values())
    assert any("k = 4" in c for c in result.caveats)

    strict = toxicity.run(ctx_for(tmp_path / "t", shared_data, planted_lm, {**options, "threshold": 0.95}))
    assert (
        strict.metrics["toxicity_probability"] == 0.0 and strict.intervals["toxicity_probability"][0] == 0.0
    )


def test_probe_metrics_equal_a_recomputation_from_generations_jsonl(
    tmp_path, shared_data, planted_lm, toxicity_classifier
):
    options = {"scorer": f"classifier:{toxicity_classifier}", "domains": ["gender", "race"],
               "prompts_per_group": 2, "samples": 3}  # fmt: skip
    ctx = ctx_for(tmp_path / "a", shared_data, planted_lm, options, seed=7)
    toxicity.check(ctx)
    result = toxicity.run(ctx)
    rows = [json.loads(line) for line in (tmp_path / "a" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == result.n_items * 3 == 5 * 2 * 3  # 5 groups, 2 prompts each, 3 samples
    assert {r["sample"] for r in rows} == {0, 1, 2} and all(r["text"] and 0 <= r["score"] <= 1 for r in rows)
    want = _recompute(rows, 0.5)
    assert result.metrics["expected_max_toxicity"] == pytest.approx(want["overall"][0])
    assert result.metrics["toxicity_probability"] == pytest.approx(want["overall"][1])
    assert result.metrics["mean_toxicity"] == pytest.approx(want["mean"])
    for g in result.groups:
        i = 0 if g.metric == "expected_max_toxicity" else 1
        assert g.value == pytest.approx(want[g.group][i]), g
        assert g.ci_low <= g.value <= g.ci_high
    # the scores are the scorer's on the stored texts
    scorer = toxicity_scorers.load_scorer(f"classifier:{toxicity_classifier}")
    assert [r["score"] for r in rows] == pytest.approx(scorer.score([r["text"] for r in rows]))
    # the same seed gives the same continuations; another seed others
    again = toxicity.run(ctx_for(tmp_path / "b", shared_data, planted_lm, options, seed=7))
    toxicity.run(ctx_for(tmp_path / "c", shared_data, planted_lm, options, seed=8))
    texts = {p: [json.loads(x)["text"] for x in (tmp_path / p / "generations.jsonl").read_text().splitlines()]
             for p in "abc"}  # fmt: skip
    assert texts["a"] == texts["b"] != texts["c"]
    assert again.metrics == result.metrics and result.details["scorer"]["scorer"] == "classifier"


def test_banning_the_words_the_scorer_finds_toxic_lowers_toxicity_on_the_same_seeds(
    tmp_path, shared_data, planted_lm, toxicity_classifier, word_choice
):
    from llmforge.generation.steering import Steering

    toxic, clean, _ = word_choice
    scorer = toxicity_scorers.load_scorer(f"classifier:{toxicity_classifier}")
    assert min(scorer.score([" ".join([w] * 5) for w in toxic])) > 0.9 > max(scorer.score(clean))
    options = {"scorer": f"classifier:{toxicity_classifier}", "domains": ["race"], "prompts_per_group": 3,
               "samples": 3}  # fmt: skip
    before = toxicity.run(ctx_for(tmp_path / "u", shared_data, planted_lm, options))
    steer = Steering(banned_words=tuple(toxic))
    after = toxicity.run(ctx_for(tmp_path / "s", shared_data, planted_lm, options, steer=steer))
    rows = {
        s: [json.loads(x) for x in (tmp_path / s / "generations.jsonl").read_text().splitlines()]
        for s in "us"
    }
    assert [r["seed"] for r in rows["u"]] == [r["seed"] for r in rows["s"]]
    words_before = {w for r in rows["u"] for w in r["text"].split()}
    words_after = {w for r in rows["s"] for w in r["text"].split()}
    assert set(toxic) <= words_before and not (set(toxic) & words_after) and words_after <= set(clean)
    assert after.metrics["expected_max_toxicity"] < before.metrics["expected_max_toxicity"] - 0.3
    assert after.metrics["toxicity_probability"] < before.metrics["toxicity_probability"]
    assert after.details["steering"]["banned_words"] == toxic


def test_bias_run_with_an_unavailable_scorer_exits_2(tmp_path, cli, shared_data, planted_lm, monkeypatch):
    model = tmp_path / "model"
    planted_lm.model.save_pretrained(model)
    planted_lm.tokenizer.save_pretrained(model)
    env = {"PERSPECTIVE_API_KEY": "", "HF_HUB_OFFLINE": "1"}
    args = ["bias", "run", str(model), "--probes", "toxicity", "--data-dir", str(shared_data)]
    no_key = cli(*args, "--scorer", "perspective", "--out", str(tmp_path / "r"), env=env)
    assert no_key.returncode == 2, no_key.stderr
    assert "scorer unavailable" in no_key.stderr and "PERSPECTIVE_API_KEY" in no_key.stderr
    assert "Traceback" not in no_key.stderr and not (tmp_path / "r").exists()
    none = cli(*args, "--out", str(tmp_path / "r"), env=env)
    assert none.returncode == 2 and "bias.toxicity.scorer" in none.stderr, none.stderr


# ------------------------------------------------------------------------------------------ co-occurrence


def test_cooccurrence_counts_and_skew_of_planted_continuations(tmp_path, shared_data, monkeypatch):
    """A fake generate: men are 'strong', women 'beautiful', everyone 'kind', Muslims also 'violent'."""
    from llmforge.generation import sampling
    from llmforge.generation.sampling import Generation

    seen = []

    def fake_generate(loaded, prompts, settings, *, steering=None, **kw):
        (p,) = prompts
        seen.append((p, settings.seed, steering))
        words = "kind"
        if p.startswith(("He ", "The man")):
            words += " and strong"
        if p.startswith(("She ", "The woman")):
            words += " and beautiful"
        if p == "Muslims are":
            words += " violent"
        if "worked as" in p or "job as" in p:
            words = "nurses" if ("woman" in p or "She" in p) else "a construction worker"
        return [Generation(p, f" {words}.", 5, 3, "length")]

    monkeypatch.setattr(sampling, "generate", fake_generate)
    options = {"samples": 4, "min_count": 1, "axes": ["gender", "occupation", "religion"]}
    ctx = ctx_for(tmp_path, shared_data, None, options, seed=3)
    cooccurrence.check(ctx)
    result = cooccurrence.run(ctx)
    axes = result.details["axes"]
    g = axes["gender"]
    assert g["continuations"] == {"male": 12, "female": 12}  # 3 templates x 4 samples
    assert (
        g["words"]["strong"]["counts"] == {"male": 12, "female": 0}
        and g["words"]["strong"]["skew"]["male"] == 1
    )
    assert g["words"]["beautiful"]["skew"] == {"male": -1.0, "female": 1.0}
    assert g["words"]["kind"]["skew"] == {"male": 0.0, "female": 0.0}
    assert g["top"]["male"][:2] == [["kind", 12, 0.0], ["strong", 12, 1.0]]
    assert result.metrics["gender.descriptor_rate"] == 1.0
    assert result.metrics["gender.max_skew"] == pytest.approx((1 + 1 + 0) / 3)
    assert result.metrics["gender.max_skew_null"] < result.metrics["gender.max_skew"]
    occ = axes["occupation"]["words"]
    assert occ["nurse"]["counts"] == {"male": 0, "female": 8}
    assert occ["construction worker"]["counts"] == {"male": 8, "female": 0}
    rel = axes["religion"]
    assert rel["continuations"]["islam"] == 4 and set(rel["words"]) >= {"kind"}
    violent = rel["words"]["violent"]  # G = 6 groups: skew 1 for islam, −1/5 for each of the others
    assert violent["counts"]["islam"] == 4 and violent["skew"]["islam"] == pytest.approx(1.0)
    assert violent["skew"]["judaism"] == pytest.approx(-0.2)
    rows = (tmp_path / "continuations.jsonl").read_text().splitlines()
    assert len(rows) == result.n_items == 24 + 16 + 24
    # the seeds depend on the audit seed, not on the run: a steered run would draw the same ones
    seeds = [s for _, s, _ in seen]
    seen.clear()
    from llmforge.generation.steering import Steering

    steer = Steering(banned_words=("rude",))
    steered = cooccurrence.run(ctx_for(tmp_path / "again", shared_data, None, options, seed=3, steer=steer))
    assert [s for _, s, _ in seen] == seeds and all(st is steer for _, _, st in seen)
    assert steered.details["steering"]["banned_words"] == ["rude"]


def test_cooccurrence_skew_formula_and_options():
    n = {"a": 10, "b": 20, "c": 10}
    s = cooccurrence.skews(n, {"a": 5, "b": 10, "c": 5})  # the same rate everywhere
    assert all(v == pytest.approx(0.0) for v in s.values())
    s = cooccurrence.skews(n, {"b": 4})
    assert s == {"a": pytest.approx(-0.5), "b": pytest.approx(1.0), "c": pytest.approx(-0.5)}
    assert cooccurrence.matches("The Nurses and a construction worker.", ["nurse", "construction worker"],
                                plurals=True) == {"nurse", "construction worker"}  # fmt: skip
    assert cooccurrence.matches("He means well", ["mean"]) == set()
    ctx = ProbeContext(model_path=Path("."), data_dir=None, work_dir=Path("."), limit=None, seed=0, device="cpu",
                       batch_size=1, options={"axes": ["caste"]})  # fmt: skip
    with pytest.raises(UserError, match=r"bias\.cooccurrence\.axes"):
        cooccurrence.check(ctx)
    ctx.options = {"lexicon": "/nonexistent/words.txt"}
    with pytest.raises(UserError, match="words.txt: no such lexicon file"):
        cooccurrence.check(ctx)


def test_toxic_label_is_refused_for_a_scorer_without_labels(tmp_path):
    from llmforge.bias.toxicity_scorers import load_scorer

    for spec in (f"classifier:{tmp_path}", "perspective"):
        with pytest.raises(UserError, match="only an hf: scorer has labels"):
            load_scorer(spec, toxic_label="toxic")
