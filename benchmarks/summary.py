"""The side-by-side table of `make bench`: for each stage, our speed over its peer's (the bare library, or a
hand-written loop), read from `benchmarks/results/<name>.json`; ratio > 1 means ours is faster.

`python -m benchmarks.summary [RESULTS_DIR]` prints it as markdown (the README's performance table) and writes
`summary.json` beside the results.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
Row = dict[str, Any]


def _row(stage: str, peer: str, metric: str, ours: float, theirs: float, same: Any = None) -> Row:
    return {
        "stage": stage,
        "against": peer,
        "metric": metric,
        "ours": round(ours, 3),
        "peer": round(theirs, 3),
        "ratio": round(ours / theirs, 3),
        "same_result": same,
    }


def _data(r: dict) -> Iterator[Row]:
    b = r["ours_vs_bare_datatrove"]  # seconds: speed is their inverse
    stage = "data build (stdlib code; ftfy, gopher_repetition, fineweb)"
    yield _row(stage, "the same datatrove steps, bare", "builds/s", 1 / b["ours_s"], 1 / b["bare_s"])


def _tokenize(r: dict) -> Iterator[Row]:
    ours, bare = r["encode_1worker_mb_per_s"], r["bare_encode_batch_mb_per_s"]
    yield _row("tokenize encode", "bare tokenizers encode_batch", "MB/s", ours, bare)


def _pretrain(r: dict) -> Iterator[Row]:
    for name, o in r["objectives"].items():
        ours, hand = (
            statistics.median(o["trainer_tokens_per_s"]),
            statistics.median(o["hand_loop_tokens_per_s"]),
        )
        yield _row(
            f"pretrain {name} ({o['model']['arch']})", "hand-written PyTorch loop", "tokens/s", ours, hand
        )


def _litgpt(r: dict) -> Iterator[Row]:
    t = r["tokens_per_s"]
    peer = "litgpt 0.5.13 pretrain (torch.compile)"
    yield _row("pretrain clm, compiled (llama 4 × 128)", peer, "tokens/s", t["ours_compiled"], t["litgpt"])
    yield _row("pretrain clm, eager (llama 4 × 128)", peer, "tokens/s", t["ours_eager"], t["litgpt"])


def _finetune(r: dict) -> Iterator[Row]:
    o = r["ours_vs_bare_trl"]
    same = o["same_tokens"] and o["max_loss_diff"] == 0.0
    ours, bare = o["ours"]["tokens_per_s"], o["bare"]["tokens_per_s"]
    yield _row("finetune sft", "bare trl SFTTrainer", "tokens/s", ours, bare, same)


def _rlhf(r: dict) -> Iterator[Row]:
    for name, t in r["trainers"].items():
        if "ours" not in t or "bare" not in t:
            continue
        same = t.get("max_loss_diff") == 0.0 if "max_loss_diff" in t else None
        ours, bare = t["ours"]["samples_per_s"], t["bare"]["samples_per_s"]
        yield _row(f"rlhf {name}", f"bare trl {name} trainer", "samples/s", ours, bare, same)


def _eval(r: dict) -> Iterator[Row]:
    ours, peer = r["llmforge_examples_per_s"], r["lm_eval_cli_examples_per_s"]
    yield _row(f"eval {r['task']}", "lm-eval CLI", "examples/s", ours, peer, r.get("same_accuracy"))


def _serve(r: dict) -> Iterator[Row]:
    s = r["single_client"]
    yield _row(
        "serve (HTTP, streaming)", "bare transformers generate", "tokens/s", s["ours_tokens_per_s"],
        s["bare_generate_tokens_per_s"],
    )  # fmt: skip


def _bias(r: dict) -> Iterator[Row]:
    o = r["crows_pairs"]
    ours, peer = o["ours_pairs_per_s"], o["lm_eval_pairs_per_s"]
    yield _row("bias crows-pairs", "lm-eval crows_pairs_english", "pairs/s", ours, peer, o.get("same_scores"))


EXTRACTORS: dict[str, Callable[[dict], Iterator[Row]]] = {
    "data": _data,
    "tokenize": _tokenize,
    "pretrain": _pretrain,
    "litgpt": _litgpt,
    "finetune": _finetune,
    "rlhf": _rlhf,
    "eval": _eval,
    "bias": _bias,
    "serve": _serve,
}


def summarize(results: Path) -> list[Row]:
    rows = []
    for name, extract in EXTRACTORS.items():
        path = results / f"{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        try:
            found = list(extract(result))
        except (KeyError, TypeError, ZeroDivisionError, IndexError) as e:
            print(f"   summary: {path.name} lacks {e} (an older format?): left out", file=sys.stderr)
            continue
        for row in found:
            row["benchmark"] = name
            row["quick"] = bool(result.get("quick"))
            row["platform"] = result.get("machine", {}).get("platform")
        rows += found
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| stage | against | metric | ours | peer | ratio |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        same = " (same result)" if r["same_result"] else ""
        lines.append(
            f"| {r['stage']} | {r['against']} | {r['metric']} | {r['ours']:g} | {r['peer']:g} | "
            f"{r['ratio']:.2f}{same} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else HERE / "results"
    rows = summarize(results)
    (results / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
