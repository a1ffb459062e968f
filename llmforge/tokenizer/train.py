"""Train a tokenizer on a bounded, streamed sample of a dataset and save it as a `tokenizer` artifact that
`transformers.AutoTokenizer.from_pretrained` loads (tokenizer.json, tokenizer_config.json,
special_tokens_map.json, chat template)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmforge.artifacts import TIMINGS, atomic_dir, require, write_json, write_manifest
from llmforge.artifacts.dataset import iter_documents
from llmforge.artifacts.split import is_val
from llmforge.console import UserError, progress, rate_text
from llmforge.tokenizer.build import finish, new_tokenizer
from llmforge.tokenizer.config import TokenizerConfig

REPORT = "report.json"


def chat_template(cfg: TokenizerConfig) -> str:
    """Jinja chat template: `<|role|>\\n content <eos>\\n` per message. Assistant turns are wrapped in
    `{% generation %}` so trl's assistant-only loss can find them."""
    st = cfg.special_tokens
    return (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\\n' }}"
        "{% if message['role'] == 'assistant' %}{% generation %}"
        f"{{{{ message['content'] + '{st.eos}' }}}}"
        "{% endgeneration %}{% else %}"
        f"{{{{ message['content'] + '{st.eos}' }}}}"
        "{% endif %}{{ '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )


def sample_texts(dataset: Path, cfg: TokenizerConfig, stats: dict[str, int], on_bytes=None) -> Iterator[str]:
    """Train-split texts in dataset order until `sample_bytes` UTF-8 bytes; counts go into `stats`.

    The val split is left out so `compare` and the pretrain stage's validation see unseen documents."""
    for doc in iter_documents(dataset):
        if stats["bytes"] >= cfg.sample_bytes:
            return
        if is_val(doc, cfg.val_fraction) or not doc["text"]:
            continue
        n = len(doc["text"].encode("utf-8", "surrogatepass"))
        stats["bytes"] += n
        stats["documents"] += 1
        if on_bytes:
            on_bytes(n)
        yield doc["text"]


def train_tokenizer(
    cfg: TokenizerConfig, dataset: Path, out: Path, *, recipe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train on `dataset`, write the artifact at `out`, return the report (also written as report.json)."""
    dataset_bytes = require(dataset, "dataset").get("stats", {}).get("bytes_out")
    tok, trainer = new_tokenizer(cfg)
    stats = {"bytes": 0, "documents": 0}
    start = time.perf_counter()
    with progress() as bar:
        total = min(cfg.sample_bytes, dataset_bytes) if dataset_bytes else cfg.sample_bytes
        task = bar.add_task("sampling + counting", total=total, rate="")

        def advance(n: int) -> None:
            bar.update(task, advance=n, rate=rate_text(stats["bytes"], time.perf_counter() - start, "B"))

        tok.train_from_iterator(sample_texts(dataset, cfg, stats, advance), trainer=trainer)
        bar.update(task, total=stats["bytes"], completed=stats["bytes"])  # val documents were not sampled
    if stats["documents"] == 0:
        raise UserError(f"{dataset}: no non-empty training documents (empty dataset?)")
    tok = finish(tok, cfg)
    seconds = time.perf_counter() - start
    report = {
        "algorithm": cfg.algorithm,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": cfg.vocab_size,
        "sample_bytes": stats["bytes"],
        "sample_documents": stats["documents"],
        "seconds": round(seconds, 3),
        "train_mb_per_s": round(stats["bytes"] / 1e6 / seconds, 3) if seconds > 0 else None,
    }
    with atomic_dir(out) as tmp:
        save_pretrained(tok, cfg, tmp)
        timings = {k: report[k] for k in ("seconds", "train_mb_per_s")}
        write_json(tmp / REPORT, {k: v for k, v in report.items() if k not in timings})
        write_json(tmp / TIMINGS, timings)
        write_manifest(tmp, "tokenizer", recipe=recipe, inputs=[dataset], stats=report)
    return report


def save_pretrained(tok: Any, cfg: TokenizerConfig, directory: Path) -> None:
    """Write the transformers files for `tok` (a `tokenizers.Tokenizer`) into `directory`.

    The declared bos_token is EOS (GPT-2's convention): documents are separated by EOS in the token shards,
    so EOS is what the model saw before every document, and evaluation that prefixes text with the bos
    (lm-eval's rolling log-likelihood) gives the model that context. `<|bos|>` stays in the vocabulary
    (id 0, so ids do not shift) as a special token. The chat-role tokens and the sentinels are the
    additional special tokens, so transformers never splits them and `skip_special_tokens` drops them."""
    from transformers import PreTrainedTokenizerFast

    st = cfg.special_tokens
    special = {
        "bos_token": st.eos,
        "eos_token": st.eos,
        "pad_token": st.pad,
        "unk_token": st.unk,
        "mask_token": st.mask,
    }
    additional = [st.role_token(r) for r in st.chat_roles] + st.sentinel_tokens()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **special,
        additional_special_tokens=additional,
        chat_template=chat_template(cfg),
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(directory)
    # transformers 5 folds this file into tokenizer_config.json; older readers (and people) still look for it.
    smap = directory / "special_tokens_map.json"
    if not smap.exists():
        smap.write_text(json.dumps({**special, "additional_special_tokens": additional}, indent=2) + "\n")
