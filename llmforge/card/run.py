"""A run directory read back from its own records: every artifact's manifest, what each stage wrote, and which
checkpoint came from which (DESIGN.md §2). Nothing here imports a stage: the on-disk contracts are the only
thing read, so `card` and `report` work on a run copied from another machine, torch-free.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, read_manifest
from llmforge.console import UserError, warn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Folders never holding an artifact of the run: temporaries of atomic writes, resume state, our own output.
_SKIP = ("trainer", "trainer_state", "__pycache__")
CARD_DIR = "reports/card"
_STEP = re.compile(r"^step-(\d+)$")
REWARD_KIND = "reward"  # how a reward model's checkpoint manifest marks it (stats.model_kind contains it)


@dataclass(frozen=True)
class Artifact:
    """One artifact of the run: where it is, relative to the run (posix; absolute when outside it), its manifest."""

    path: Path
    rel: str
    manifest: dict[str, Any] = field(compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats") or {}

    @property
    def created_at(self) -> str:
        return str(self.manifest.get("created_at", ""))

    @property
    def content_hash(self) -> str | None:
        return self.manifest.get("content_hash")

    def json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the artifact (results.json, report.json), or None when absent or unreadable."""
        return read_json(self.path / name)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_run_dir(run_dir: Path) -> Path:
    """The run directory, resolved; UserError when it is missing, not a directory, or an artifact itself."""
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run directory (a file; expected runs/<name>/)")
    if (run_dir / MANIFEST).is_file():
        kind = (read_json(run_dir / MANIFEST) or {}).get("kind", "an")
        raise UserError(
            f"{run_dir}: a {kind} artifact, not a run directory; give the run that holds it (runs/<name>/)"
        )
    return run_dir.resolve()


def scan(run_dir: Path) -> list[Artifact]:
    """Every artifact under the run directory (a folder holding manifest.json), nested ones too (a tax
    report's before/after evals), in path order; unreadable manifests are warned about and skipped."""
    found = []
    for folder, dirs, files in os.walk(run_dir):
        here = Path(folder)
        rel = here.relative_to(run_dir).as_posix()
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP)
        if rel == CARD_DIR:  # our own earlier output is not a record of the run
            dirs[:] = []
            continue
        if MANIFEST in files:
            try:
                found.append(Artifact(here, rel, read_manifest(here)))
            except UserError as e:
                warn(f"skipped: {e}")
    return found


@dataclass
class Run:
    """A run directory's artifacts and loose records (recipe.toml, metrics.jsonl, PNGs under reports/)."""

    root: Path
    artifacts: list[Artifact]

    @classmethod
    def load(cls, run_dir: Path) -> Run:
        root = check_run_dir(run_dir)
        artifacts = scan(root)
        if not artifacts:
            raise UserError(
                f"{run_dir}: no artifacts in this directory (no {MANIFEST} below it); "
                "expected a run directory written by llmforge (runs/<name>/)"
            )
        return cls(root, artifacts)

    @property
    def name(self) -> str:
        return str(self.recipe.get("run", {}).get("name") or self.root.name)

    @cached_property
    def recipe(self) -> dict[str, Any]:
        """The resolved recipe as run (recipe.toml), read as plain TOML; {} when absent or unreadable."""
        try:
            return tomllib.loads((self.root / "recipe.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return {}

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        """Pretraining's metrics.jsonl lines (log lines, validations, events); [] when absent."""
        path = self.root / "metrics.jsonl"
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def at(self, rel: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.rel == rel), None)

    def of_kind(self, kind: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind == kind]

    def first(self, kind: str, rel: str) -> Artifact | None:
        """The artifact at its usual place, else the first of its kind anywhere in the run."""
        usual = self.at(rel)
        if usual is not None and usual.kind == kind:
            return usual
        return next(iter(self.of_kind(kind)), None)

    # ---------------------------------------------------------------------------- references

    def ref(self, ref: dict[str, Any]) -> Artifact | None:
        """The artifact a manifest's input names: the one at its path (inside the run or not), else the run's
        artifact with its content hash (the run was moved or copied since)."""
        path, digest = ref.get("path"), ref.get("content_hash")
        if path and (Path(path) / MANIFEST).is_file():
            resolved = Path(path).resolve()
            found = next((a for a in self.artifacts if a.path == resolved), None)
            if found is not None:
                return found
            try:
                return Artifact(resolved, str(resolved), read_manifest(resolved))
            except UserError:
                return None
        if digest:
            return next((a for a in self.artifacts if a.content_hash == digest), None)
        return None

    def names(self, a: Artifact, ref: dict[str, Any] | str | None) -> bool:
        """Whether `ref` (an input entry, or a path string) is artifact `a`: by path, or by content hash when the
        recorded path holds no artifact any more (the run was moved or copied)."""
        if ref is None:
            return False
        if isinstance(ref, str):
            ref = {"path": ref}
        path = Path(ref["path"]) if ref.get("path") else None
        if path is not None and (path / MANIFEST).is_file():
            return path.resolve() == a.path
        digest = ref.get("content_hash")
        return bool(digest) and digest == a.content_hash

    def parent_checkpoint(self, a: Artifact) -> Artifact | None:
        """The checkpoint a checkpoint was trained from (its first checkpoint input), if recorded."""
        for ref in a.manifest.get("inputs", []):
            if ref.get("kind") == "checkpoint":
                return self.ref(ref)
        return None

    def helpers(self, a: Artifact) -> list[Artifact]:
        """Checkpoints a checkpoint was trained with besides its parent (PPO's or RLOO's reward model)."""
        refs = [r for r in a.manifest.get("inputs", []) if r.get("kind") == "checkpoint"][1:]
        return [x for x in (self.ref(r) for r in refs) if x is not None]

    def ancestry(self, a: Artifact) -> list[Artifact]:
        """The checkpoint, the one it was trained from, and so on back to pretraining."""
        chain, seen = [a], {a.path}
        while (parent := self.parent_checkpoint(chain[-1])) is not None and parent.path not in seen:
            chain.append(parent)
            seen.add(parent.path)
        return chain

    # ------------------------------------------------------------------------- checkpoints

    @cached_property
    def pretrain_checkpoints(self) -> list[Artifact]:
        """checkpoints/step-N, by step."""
        ckpts = [a for a in self.of_kind("checkpoint") if _pretrain_step(a) is not None]
        return sorted(ckpts, key=lambda a: _pretrain_step(a) or 0)

    @cached_property
    def finetune_checkpoints(self) -> list[Artifact]:
        return [a for a in self.of_kind("checkpoint") if a.rel.split("/", 1)[0] == "finetune"]

    @cached_property
    def rlhf_checkpoints(self) -> list[Artifact]:
        """Every checkpoint under rlhf/ (policies and reward models), oldest first."""
        ckpts = [a for a in self.of_kind("checkpoint") if a.rel.split("/", 1)[0] == "rlhf"]
        return sorted(ckpts, key=lambda a: a.created_at)

    def is_reward_model(self, a: Artifact) -> bool:
        return REWARD_KIND in str(a.stats.get("model_kind", "")).lower()

    def stage_of(self, a: Artifact) -> str:
        """pretrain / finetune / rlhf-<trainer> / reward-model / checkpoint (elsewhere)."""
        if _pretrain_step(a) is not None:
            return "pretrain"
        top = a.rel.split("/")
        if top[0] == "finetune":
            return "finetune"
        if top[0] == "rlhf":
            if self.is_reward_model(a):
                return "reward-model"
            return "rlhf-" + trainer_name(a.rel)
        return "checkpoint"

    def default_checkpoint(self) -> Artifact | None:
        """The last stage's final checkpoint: the newest RLHF policy, else the newest fine-tune, else
        pretraining's last step."""
        policies = [a for a in self.rlhf_checkpoints if not self.is_reward_model(a)]
        if policies:
            return policies[-1]
        if self.finetune_checkpoints:
            return sorted(self.finetune_checkpoints, key=lambda a: a.created_at)[-1]
        if self.pretrain_checkpoints:
            return self.pretrain_checkpoints[-1]
        return None

    def checkpoint(self, given: Path | None) -> Artifact | None:
        """`--checkpoint` (a path as given, or relative to the run) or the default; UserError when it names no
        checkpoint artifact."""
        if given is None:
            return self.default_checkpoint()
        for candidate in (given, self.root / given):
            if (candidate / MANIFEST).is_file():
                path = candidate.resolve()
                found = next((a for a in self.artifacts if a.path == path), None)
                if found is None:
                    found = Artifact(path, str(path), read_manifest(path))
                if found.kind != "checkpoint":
                    raise UserError(
                        f"--checkpoint {given}: expected a checkpoint artifact, found a {found.kind}"
                    )
                return found
        raise UserError(f"--checkpoint {given}: no checkpoint artifact there (nor under {self.root})")

    # ----------------------------------------------------------------------------- reports

    def reports(self, role: str) -> list[Artifact]:
        """Report artifacts by what wrote them, oldest first: pretrain, lm-eval, perplexity, finetune, rlhf,
        tax, bias, rounds, other."""
        return sorted((a for a in self.of_kind("report") if self.role(a) == role), key=lambda a: a.created_at)

    def role(self, a: Artifact) -> str:
        """`report_role`, except that a report inside a bias report (a probe's lm-eval run) is part of it."""
        for other in self.artifacts:
            if a.rel.startswith(other.rel + "/") and other.kind == "report" and report_role(other) == "bias":
                return "bias-part"
        return report_role(a)

    def report_model(self, a: Artifact) -> dict[str, Any] | None:
        """The input entry (or {"path": …}) of the model a report is about."""
        results = a.json("results.json") or {}
        if self.role(a) == "bias" and results.get("model"):
            return {"path": results["model"]}
        inputs = a.manifest.get("inputs") or []
        return inputs[0] if inputs else None

    def reports_for(self, role: str, ckpt: Artifact) -> list[Artifact]:
        return [a for a in self.reports(role) if self.names(ckpt, self.report_model(a))]

    def pngs(self) -> list[Path]:
        """Every PNG in the run's records (artifacts and loose plots under reports/), our own output excluded."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            rel = Path(folder).relative_to(self.root).as_posix()
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP)
            if rel == CARD_DIR:
                dirs[:] = []
                continue
            found += [Path(folder) / f for f in sorted(files) if f.endswith(".png")]
        return found

    def relative(self, path: Path | str) -> str:
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(p)


def _pretrain_step(a: Artifact) -> int | None:
    parts = a.rel.split("/")
    if (
        a.kind == "checkpoint"
        and len(parts) == 2
        and parts[0] == "checkpoints"
        and (m := _STEP.match(parts[1]))
    ):
        return int(m.group(1))
    return None


def trainer_name(rel: str) -> str:
    """`rlhf/dpo/checkpoint` → dpo; `rlhf/rounds/round-2/dpo/checkpoint` → rounds/round-2/dpo."""
    parts = rel.split("/")[1:]
    if parts and parts[-1] in ("checkpoint", "report"):
        parts = parts[:-1]
    return "/".join(parts) or "rlhf"


def report_role(a: Artifact) -> str:
    """What kind of report an artifact is, from its own files (a report may be anywhere in the run)."""
    parts = a.rel.split("/")
    if a.rel == "reports/pretrain":
        return "pretrain"
    report = a.json("report.json")
    if report is not None and "rows" in report and "before" in report and "after" in report:
        return "tax"
    if (a.path / "rounds.json").is_file():
        return "rounds"
    results = a.json("results.json") or {}
    if isinstance(results.get("probes"), dict):
        return "bias"
    if parts[0] == "finetune":
        return "finetune"
    if parts[0] == "rlhf":
        return "rlhf"
    tasks = results.get("results")
    if isinstance(tasks, dict) and tasks:
        values = [v for v in tasks.values() if isinstance(v, dict)]
        if values and all("tokens" in v and "bytes" in v for v in values):
            return "perplexity"
        return "eval"
    return "other"
