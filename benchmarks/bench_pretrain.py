"""Pretraining throughput of each objective: our trainer against a minimal hand-written PyTorch loop of the
same model, data preparation (the same masking / span corruption code), batch, precision (fp32) and
optimizer, in the same process. Target: ratio ≥ 0.9 for every objective.

Both are timed over their optimizer steps only (data preparation included, evaluation and checkpoint writing
left out); the two are run alternately ROUNDS times and the best round of each is kept, to damp the noise of
a shared 2-core machine. Tokens are encoder input tokens (seq_len per sequence) for every objective.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")  # a smoke run, not a measurement
STEPS = 4 if QUICK else 12
ROUNDS = 1 if QUICK else 3
VOCAB = 4096
SEQ = 256
BATCH_TOKENS = 8192
MICRO = 8
MODELS = {
    "clm": {"arch": "llama", "n_layers": 4, "d_model": 128, "n_heads": 4, "ffn_dim": 384, "max_seq_len": SEQ},
    "mlm": {"arch": "bert", "n_layers": 4, "d_model": 128, "n_heads": 4, "ffn_dim": 512, "max_seq_len": SEQ},
    "span-corruption": {
        "arch": "t5",
        "n_layers": 4,
        "n_decoder_layers": 4,
        "d_model": 128,
        "n_heads": 4,
        "ffn_dim": 256,
        "max_seq_len": SEQ,
    },
}
TRAIN = {
    "seq_len": SEQ,
    "global_batch_tokens": BATCH_TOKENS,
    "micro_batch": MICRO,
    "max_steps": STEPS,
    "lr": 3e-3,
    "warmup_steps": 5,
    "eval_every": 10_000,
    "eval_tokens": SEQ,
    "checkpoint_every": 10_000,
    "log_every": 10_000,
}


def _tokens(root: Path) -> Path:
    """A Zipfian stream over a 4096-word tokenizer written by the tokenize stage's code (mask token, 32
    sentinels), EOS every 200 tokens; the index records what `tokenize encode` records."""
    from llmforge.artifacts import write_manifest
    from llmforge.tokenizer.build import finish, new_tokenizer
    from llmforge.tokenizer.config import TokenizerConfig
    from llmforge.tokenizer.encode import sentinel_ids
    from llmforge.tokenizer.train import save_pretrained

    cfg = TokenizerConfig.model_validate(
        {"algorithm": "word", "vocab_size": VOCAB, "min_frequency": 1, "special_tokens": {"sentinels": 32}}
    )
    tok, trainer = new_tokenizer(cfg)
    tok.train_from_iterator([" ".join(f"w{i}" for i in range(VOCAB))], trainer=trainer)
    tok = finish(tok, cfg)
    tokenizer = root / "tokenizer"
    tokenizer.mkdir()
    save_pretrained(tok, cfg, tokenizer)
    write_manifest(tokenizer, "tokenizer")
    words = np.array([i for t, i in tok.get_vocab().items() if t.startswith("w")])
    eos = tok.token_to_id(cfg.special_tokens.eos)
    ids = words[np.random.default_rng(0).zipf(1.3, size=400_000) % len(words)]
    ids[199::200] = eos
    path = root / "tokens"
    splits = {}
    for split, part in (("train", ids[:360_000]), ("val", ids[360_000:])):
        (path / split).mkdir(parents=True)
        part.astype(np.uint16).tofile(path / split / "00000.bin")
        shard = {"file": f"{split}/00000.bin", "tokens": len(part), "documents": 1, "max_id": int(part.max())}
        splits[split] = {"tokens": len(part), "documents": 1, "shards": [shard]}
    index = {
        "format": 1,
        "dtype": "uint16",
        "vocab_size": tok.get_vocab_size(),
        "eos_id": eos,
        "mask_id": tok.token_to_id(cfg.special_tokens.mask),
        "sentinel_ids": sentinel_ids(tok),
        "tokenizer_path": str(tokenizer.resolve()),
        "splits": splits,
    }
    (path / "index.json").write_text(json.dumps(index))
    write_manifest(path, "tokens")
    return path


def _trainer(root: Path, tokens: Path, objective: str, name: str) -> float:
    from llmforge.console import configure
    from llmforge.pretrain.run import run_pretraining
    from llmforge.recipe import validate_recipe

    configure(quiet=True)
    recipe = validate_recipe(
        {"run": {"name": name, "out_dir": str(root), "seed": 0}, "model": MODELS[objective], "train": TRAIN}
    )
    return run_pretraining(recipe, tokens).results["tokens_per_s"]


class _HandBatches:
    """nanoGPT-style data: random windows from a memmap, prepared with the objective's own data code."""

    def __init__(self, tokens: Path, objective: str):
        from llmforge.objectives.masking import Masker, MaskingRule
        from llmforge.objectives.span_corruption import SpanCorruption

        index = json.loads((tokens / "index.json").read_text())
        self.data = np.memmap(tokens / "train" / "00000.bin", dtype=np.uint16, mode="r")
        self.objective, self.rng, self.calls = objective, np.random.default_rng(0), 0
        self.window = SEQ + 1 if objective == "clm" else SEQ
        if objective == "mlm":
            self.masker = Masker(index["tokenizer_path"], MaskingRule())
        if objective == "span-corruption":
            self.span = SpanCorruption()
            self.window = self.span.lengths(SEQ)[0]
            self.sentinels, self.eos, self.pad = index["sentinel_ids"], index["eos_id"], 2

    def next(self):  # noqa: ANN201 - (model inputs, labels)
        import torch

        starts = self.rng.integers(0, len(self.data) - self.window, size=MICRO)
        rows = np.stack([self.data[s : s + self.window] for s in starts]).astype(np.int64)
        seeds = [[0, self.calls, k] for k in range(MICRO)]
        self.calls += 1
        if self.objective == "clm":
            batch = torch.from_numpy(rows)
            return {"input_ids": batch[:, :-1]}, batch[:, 1:]
        if self.objective == "mlm":
            inputs, labels = self.masker.mask(torch.from_numpy(rows), seeds)
            return {"input_ids": inputs}, labels
        inputs, targets = self.span.batch(rows, seeds, self.sentinels, self.eos)
        targets = torch.from_numpy(targets)
        start = torch.full((MICRO, 1), self.pad, dtype=torch.long)
        decoder = torch.cat([start, targets[:, :-1]], dim=1)
        return {"input_ids": torch.from_numpy(inputs), "decoder_input_ids": decoder}, targets


def _hand_loop(tokens: Path, objective: str) -> float:
    """Windows, the objective's data preparation, forward, cross-entropy over the scored positions,
    backward, clip, AdamW step."""
    import torch
    import torch.nn.functional as F

    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model

    index = json.loads((tokens / "index.json").read_text())
    model = build_model(ModelConfig(**MODELS[objective]), index["vocab_size"], index["eos_id"], 0, pad_id=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    batches = _HandBatches(tokens, objective)
    accum = BATCH_TOKENS // (SEQ * MICRO)
    elapsed = 0.0
    for _ in range(STEPS):
        start = time.perf_counter()
        for _ in range(accum):
            inputs, labels = batches.next()
            logits = model(**inputs).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        elapsed += time.perf_counter() - start
    return STEPS * BATCH_TOKENS / elapsed


def _one_objective(root: Path, tokens: Path, objective: str, peak: float) -> dict:
    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model, model_size

    ours, hand = [], []
    for i in range(ROUNDS):
        hand.append(_hand_loop(tokens, objective))
        ours.append(_trainer(root, tokens, objective, f"{objective}-{i}"))
    target_len = None
    if objective == "span-corruption":
        from llmforge.objectives.span_corruption import SpanCorruption

        target_len = SpanCorruption().lengths(SEQ)[1]
    vocab = json.loads((tokens / "index.json").read_text())["vocab_size"]
    size = model_size(build_model(ModelConfig(**MODELS[objective]), vocab, 1, 0), SEQ, target_len)
    best_ours, best_hand = max(ours), max(hand)
    return {
        "model": MODELS[objective],
        "params": size.params,
        "flops_per_token": size.flops_per_token,
        "trainer_tokens_per_s": [round(x) for x in ours],
        "hand_loop_tokens_per_s": [round(x) for x in hand],
        "trainer_mfu": size.flops_per_token * best_ours / peak,
        "hand_loop_mfu": size.flops_per_token * best_hand / peak,
        "ratio": best_ours / best_hand,
    }


def run() -> dict:
    import torch

    from llmforge.pretrain.metrics import device_peak

    measured = device_peak("fp32")
    root = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    try:
        tokens = _tokens(root)
        objectives = {name: _one_objective(root, tokens, name, measured.flops) for name in MODELS}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "quick": QUICK,
        "device": measured.device,
        "torch_threads": torch.get_num_threads(),
        "batch_tokens": BATCH_TOKENS,
        "seq_len": SEQ,
        "precision": "fp32",
        "steps": STEPS,
        "peak_flops": measured.flops,
        "objectives": objectives,
        "ratio": min(o["ratio"] for o in objectives.values()),
        "target_ratio": 0.9,
    }
