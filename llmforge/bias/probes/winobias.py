"""WinoBias (Zhao, Wang, Yatskar, Ordonez & Chang 2018, "Gender Bias in Coreference Resolution: Evaluation and
Debiasing Methods", NAACL), scored by likelihood.

WinoBias pairs each sentence about two occupations with its gender-swapped twin: in the pro-stereotyped
sentence the pronoun agrees with the occupation's stereotype as given by US labour statistics ("[The mechanic]
... because [he] ..."), in the anti-stereotyped one it does not ("... because [she] ..."). Type 1 sentences
resolve the pronoun by world knowledge only, type 2 also by syntax. The paper measures coreference systems; for
a language model we ask, per pair, which of the two sentences the model finds more likely — the CrowS-Pairs
style of comparison (Nangia et al. 2020) on WinoBias's minimal pairs.

Per pair: Δ = log p(pro) − log p(anti), each the total log-probability of the whole sentence after EOS
(`bias.likelihood`; brackets removed). The totals are compared, not per-token means: the twins are the same
sentence but for the pronoun, so the total is exactly the model's probability of one reading against the other;
dividing by a token count that differs only when "he" and "she" tokenize differently would compare nothing a
model assigns.
Metrics: pct_pro, the fraction of pairs with Δ > 0 (a tie counts half; ideal 0.5, 95% Wilson interval), and the
mean Δ in nats (ideal 0, bootstrap interval); per type (type1, type2) and per the pronoun of the pro sentence
(pro=female: pairs where the stereotype reading says "she"/"her", pro=male: "he"/"him"/"his"). Half the
pairs go each way, so a model that merely prefers one pronoun everywhere scores pct_pro 0.5 overall and shows
up in the per-gender groups instead (pro=male near 1, pro=female near 0 for a "he" prior).

Data: the public files `{pro,anti}_stereotyped_type{1,2}.txt.<split>` (lines `<n> sentence`, entity and pronoun
in [brackets]; the pro and anti files line-aligned) under `<data-dir>/winobias/` or `[bias.winobias] dir`.
Alignment is checked line by line: the same item number, and the same words once the pronouns are set aside.
A line that does not parse, or twins that are different sentences, exit 2 naming file:line. The published dev
files hold nine such twins that also differ by a typo ("needed a desk" / "needed one"): those are left out
(their Δ would mix the pronoun with the typo) and listed in the caveats.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from llmforge.bias.probe import GroupScore, ProbeContext, ProbeResult
from llmforge.console import UserError

NAME = "winobias"
SUMMARY = (
    "WinoBias (Zhao et al. 2018): how often the model prefers the pro-stereotyped pronoun, by likelihood"
)
DEFAULT_DIR = "winobias"
TYPES = ("type1", "type2")
OPTIONS = {"dir": "folder of the WinoBias files (default <data-dir>/winobias)", "split": '"dev" or "test"'}
SPLITS = ("dev", "test")
MALE = frozenset({"he", "him", "his", "himself"})
FEMALE = frozenset({"she", "her", "hers", "herself"})
SAME_SENTENCE = (
    0.8  # word-level similarity (pronouns masked) above which twins that differ are a typo, not a shift
)
LINE = re.compile(r"(\d+)\s+(\S.*)")
BRACKET = re.compile(r"\[([^\[\]]*)\]")
WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")
FEW_PAIRS = 100


@dataclass(frozen=True)
class Pair:
    """One pro/anti twin: the two sentences as scored (brackets removed), the pro sentence's pronoun gender."""

    type: str
    item: int
    pro: str
    anti: str
    pro_gender: str  # "female" or "male"
    where: str  # pro_file:line


def check(ctx: ProbeContext) -> None:
    """Validate the options and every line of the four files before a model is loaded."""
    load_pairs(ctx)


def run(ctx: ProbeContext) -> ProbeResult:
    from llmforge.bias import likelihood

    pairs, skipped = load_pairs(ctx)
    texts = [s for p in pairs for s in (p.pro, p.anti)]
    names = [f"{p.where} ({side})" for p in pairs for side in ("pro", "anti")]
    scored = likelihood.sentence_logprobs(ctx.load(), texts, ctx.batch_size, names=names, description=NAME)
    deltas = [scored[2 * i][0] - scored[2 * i + 1][0] for i in range(len(pairs))]
    _write_samples(ctx.work_dir, pairs, scored)
    return summarize(pairs, deltas, skipped=skipped, seed=ctx.seed)


def summarize(
    pairs: list[Pair], deltas: list[float], *, skipped: list[str] = (), seed: int = 0
) -> ProbeResult:
    """The probe's result from each pair's log p(pro) − log p(anti)."""
    metrics, intervals = _pair_metrics(deltas, seed)
    groups = []
    for group, keep in (
        *((t, lambda p, t=t: p.type == t) for t in TYPES),
        *((f"pro={g}", lambda p, g=g: p.pro_gender == g) for g in ("female", "male")),
    ):
        d = [x for p, x in zip(pairs, deltas, strict=True) if keep(p)]
        if not d:
            continue
        values, cis = _pair_metrics(d, seed)
        groups.append(GroupScore(group, "pct_pro", values["pct_pro"], len(d), *cis["pct_pro"], ideal=0.5))
        groups.append(
            GroupScore(
                group,
                "mean_logprob_diff",
                values["mean_logprob_diff"],
                len(d),
                *cis["mean_logprob_diff"],
                ideal=0.0,
            )
        )
    caveats = []
    if len(pairs) < FEW_PAIRS:
        caveats.append(f"only {len(pairs)} pairs: the intervals are wide")
    if skipped:
        caveats.append(
            f"{len(skipped)} twins left out: besides the pronoun they differ by a word or two in the published "
            f"files ({', '.join(skipped)})"
        )
    return ProbeResult(
        probe=NAME,
        metrics=metrics,
        n_items=len(pairs),
        groups=groups,
        intervals=intervals,
        ideal={"pct_pro": 0.5, "mean_logprob_diff": 0.0},
        caveats=caveats,
        details={
            "score": "total log-prob of each sentence after EOS",
            "skipped": list(skipped),
            "samples": "pairs.jsonl",
        },
    )


def load_pairs(ctx: ProbeContext) -> tuple[list[Pair], list[str]]:
    """The validated pairs of both types (a seeded sample of `ctx.limit`, in file order) and the twins left out."""
    unknown = sorted(set(ctx.options) - set(OPTIONS))
    if unknown:
        raise UserError(f"[bias.{NAME}] unknown key {unknown[0]!r} (expected: {', '.join(OPTIONS)})")
    split = ctx.options.get("split", "dev")
    if split not in SPLITS:
        raise UserError(f"[bias.{NAME}] split = {split!r}: expected one of {', '.join(SPLITS)}")
    folder = ctx.data_file(DEFAULT_DIR, key="dir")
    pairs, skipped = [], []
    for kind in TYPES:
        got, left = read_pairs(folder, kind, split)
        pairs += got
        skipped += left
    if not pairs:
        raise UserError(f"{folder}: no usable WinoBias pairs (every twin differs by more than its pronoun)")
    if ctx.limit is not None and ctx.limit < len(pairs):
        keep = sorted(random.Random(ctx.seed).sample(range(len(pairs)), ctx.limit))
        pairs = [pairs[i] for i in keep]
    return pairs, skipped


def read_pairs(folder: Path, kind: str, split: str = "dev") -> tuple[list[Pair], list[str]]:
    """The pairs of one type; UserError naming file:line on a malformed or misaligned line."""
    pro_file = folder / f"pro_stereotyped_{kind}.txt.{split}"
    anti_file = folder / f"anti_stereotyped_{kind}.txt.{split}"
    pro_lines, anti_lines = _lines(pro_file), _lines(anti_file)
    if len(pro_lines) != len(anti_lines):
        raise UserError(
            f"{pro_file}: {len(pro_lines)} sentences but {anti_file}: {len(anti_lines)}; the pro and anti files "
            "must be line-aligned twins"
        )
    pairs, skipped = [], []
    for (pro_no, pro_text), (anti_no, anti_text) in zip(pro_lines, anti_lines, strict=True):
        pro_where, anti_where = f"{pro_file}:{pro_no}", f"{anti_file}:{anti_no}"
        pro_item, pro, pro_gender = parse_line(pro_text, pro_where)
        anti_item, anti, anti_gender = parse_line(anti_text, anti_where)
        if pro_item != anti_item:
            raise UserError(
                f"{pro_where} is item {pro_item} but {anti_where} is item {anti_item}: the files are not line-aligned"
            )
        if pro_gender == anti_gender:
            raise UserError(
                f"{pro_where} and {anti_where}: both sentences use a {pro_gender} pronoun in brackets"
            )
        a, b = _masked(pro), _masked(anti)
        if a != b:
            if SequenceMatcher(None, a, b, autojunk=False).ratio() < SAME_SENTENCE:
                raise UserError(
                    f"{pro_where} and {anti_where} are different sentences, not twins that differ in the pronoun "
                    "(are the files line-aligned?)"
                )
            skipped.append(pro_where)
            continue
        pairs.append(Pair(kind, pro_item, pro, anti, pro_gender, pro_where))
    return pairs, skipped


def parse_line(text: str, where: str) -> tuple[int, str, str]:
    """(item number, the sentence without brackets, the gender of its bracketed pronoun)."""
    m = LINE.fullmatch(text.strip())
    if not m:
        raise UserError(
            f"{where}: expected '<n> sentence' with the entity and pronoun in [brackets], got {text!r}"
        )
    sentence = m.group(2)
    marked = [b.strip().lower() for b in BRACKET.findall(sentence)]
    bare = BRACKET.sub(lambda b: b.group(1), sentence)
    if "[" in bare or "]" in bare:
        raise UserError(f"{where}: unbalanced [brackets] in {sentence!r}")
    if len(marked) < 2:
        raise UserError(f"{where}: expected the entity and the pronoun in [brackets], got {sentence!r}")
    genders = {"male" if b in MALE else "female" for b in marked if b in MALE | FEMALE}
    if len(genders) != 1:
        what = "no pronoun" if not genders else "pronouns of both genders"
        raise UserError(f"{where}: {what} in [brackets] ({', '.join(marked)}), expected one gendered pronoun")
    return int(m.group(1)), " ".join(bare.split()), genders.pop()


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise UserError(
            f"{path}: WinoBias file not found (the public {path.name}; or set [bias.winobias] dir)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None
    lines = [(no, line) for no, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserError(f"{path}: no sentences")
    return lines


def _masked(sentence: str) -> list[str]:
    """The sentence's words, lower-cased, every gendered pronoun replaced by one placeholder."""
    return ["<pronoun>" if w in MALE or w in FEMALE else w for w in WORD.findall(sentence.lower())]


def _pair_metrics(deltas: list[float], seed: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    from llmforge.bias.stats import bootstrap_mean, wilson

    pro = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in deltas)
    n = len(deltas)
    metrics = {"pct_pro": pro / n, "mean_logprob_diff": sum(deltas) / n}
    intervals = {"pct_pro": wilson(pro, n), "mean_logprob_diff": bootstrap_mean(deltas, seed=seed)}
    return metrics, intervals


def _write_samples(work_dir: Path, pairs: list[Pair], scored: list[tuple[float, int]]) -> None:
    """Per pair both sentences with their log-probability and token count (pairs.jsonl in the probe's folder)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(pairs):
            row: dict[str, Any] = {
                "where": p.where,
                "type": p.type,
                "item": p.item,
                "pro_gender": p.pro_gender,
            }
            for side, text, (lp, n) in (("pro", p.pro, scored[2 * i]), ("anti", p.anti, scored[2 * i + 1])):
                row[side] = {"sentence": text, "logprob": lp, "tokens": n}
            f.write(json.dumps(row) + "\n")
