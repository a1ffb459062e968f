"""A bias audit: every selected probe on one model, written as one `report` artifact.

Order of work: the model dir, the output path, the steering config and every probe's data are checked before
the model is loaded, so a bad input exits 2 at once. Each finished probe is kept in `.<out>.partial/` beside the
report until the whole audit is written, so a killed audit rerun with the same settings skips the probes it had
finished. With a steering config, the probes that sample text run twice, unsteered and steered, on the same seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.bias.config import BiasConfig
from llmforge.bias.probe import GroupScore, ProbeContext, ProbeResult
from llmforge.bias.probes import PROBES, probe_module
from llmforge.console import UserError, info, warn

RESULTS = "results.json"
SIDES = ("unsteered", "steered")


@dataclass
class Audit:
    """What one `bias run` does, decided before any model is loaded."""

    model: Path
    cfg: BiasConfig
    out: Path
    probes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # probe -> why it did not run
    steering: Any | None = None


def plan_audit(model: Path, cfg: BiasConfig, out: Path, *, force: bool) -> Audit:
    """Check the inputs and choose the probes: the ones named in `cfg.probes` (each must have its data), or, when
    none are named, every probe whose data is found (and, for toxicity, whose scorer is configured)."""
    from llmforge.artifacts.model_dir import require_causal_lm_dir

    require_causal_lm_dir(model, "bias run")
    _check_out(out, force, model)
    steering = None
    if cfg.steer:
        from llmforge.generation.steering import load_steering

        steering = load_steering(cfg.steer)
    audit = Audit(model=model, cfg=cfg, out=out, probes=[], steering=steering)
    for name in cfg.probes or list(PROBES):
        ctx = context(audit, name, out / name)
        if not cfg.probes:
            why = _unavailable(name, ctx)
            if why:
                audit.skipped[name] = why
                continue
        probe_module(name).check(ctx)
        audit.probes.append(name)
    if not audit.probes:
        reasons = "; ".join(f"{p}: {why}" for p, why in audit.skipped.items())
        raise UserError(f"no probe can run ({reasons}); give --data-dir (e.g. ../shared/data) or --probes")
    for name, why in audit.skipped.items():
        info(f"[dim]skipping probe {name}: {why}[/]")
    return audit


def _check_out(out: Path, force: bool, model: Path) -> None:
    """`out` must be new, empty, or an earlier bias report (replaced only with --force): --force never deletes
    another artifact, a run directory or the model."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; a report is a directory")
    if model.resolve().is_relative_to(out.resolve()):
        raise UserError(f"--out {out}: holds the model being audited; choose another folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_bias_report(out):
            raise UserError(
                f"--out {out}: not empty and not an earlier bias report; choose a new or empty folder"
            )
        if not force:
            raise UserError(
                f"--out {out}: a bias report already exists; pass --force to replace it, or another --out"
            )
    try:
        ensure_writable(out)
    except UserError as e:
        raise UserError(f"--out {e}") from None


def _is_bias_report(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        results = json.loads((folder / RESULTS).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("kind") == "report" and isinstance(results, dict) and "probes" in results


def _data_path(name: str, ctx: ProbeContext) -> Path | None:
    """The probe's data file or folder (its `[bias.<probe>]` key, else the default under the data dir)."""
    spec = PROBES[name]
    try:
        return ctx.data_file(spec.data, key=spec.data_key)
    except UserError:
        return None


def _unavailable(name: str, ctx: ProbeContext) -> str | None:
    """Why a probe left to the default selection cannot run here (None: it can)."""
    data = _data_path(name, ctx)
    if data is None:
        return "no --data-dir"
    if not data.exists():
        return f"no {data}"
    if name == "toxicity" and not ctx.options.get("scorer"):
        return "no toxicity scorer (bias.toxicity.scorer or --scorer)"
    return None


def context(audit: Audit, name: str, work_dir: Path, *, steered: bool = False, load=None) -> ProbeContext:
    cfg = audit.cfg
    return ProbeContext(
        model_path=audit.model,
        data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
        work_dir=work_dir,
        limit=cfg.limit,
        seed=cfg.seed,
        device=cfg.device,
        batch_size=cfg.batch_size,
        steer=audit.steering if steered else None,
        options=cfg.options(name),
        load=load,
    )


def run_audit(audit: Audit) -> dict[str, Any]:
    """Run the probes (reusing those a killed run with the same settings finished) and write the report."""
    from llmforge.bias.report import write_report

    partial = audit.out.with_name(f".{audit.out.name}.partial")
    _open_partial(partial, fingerprint(audit))
    loader = _Loader(audit.model, audit.cfg.device)
    results: dict[str, dict[str, ProbeResult]] = {}
    for name in audit.probes:
        sides = SIDES if (audit.steering is not None and PROBES[name].generates) else SIDES[:1]
        for side in sides:
            results.setdefault(name, {})[side] = _run_probe(audit, name, side, partial, loader)
    caveats = _audit_caveats(audit)
    with atomic_dir(audit.out) as tmp:
        for entry in partial.iterdir():
            if entry.is_dir() and not entry.name.startswith("."):
                shutil.copytree(entry, tmp / entry.name)
        document = results_document(audit, results, caveats)
        write_report(tmp, document)
        document = json_safe(document)
        write_json(tmp / RESULTS, document)
        write_manifest(
            tmp,
            "report",
            recipe={"bias": audit.cfg.model_dump(mode="json", exclude_none=True)},
            inputs=[audit.model, *_data_inputs(audit)],
            stats=_stats(document),
        )
    shutil.rmtree(partial, ignore_errors=True)
    document["report"] = str(audit.out)
    return document


def _run_probe(audit: Audit, name: str, side: str, partial: Path, loader: _Loader) -> ProbeResult:
    folder = partial / (name if side == "unsteered" else f"{name}.steered")
    done = folder / "result.json"
    if done.is_file():
        info(f"probe {name} ({side}): finished by an earlier run, kept")
        return result_from_dict(json.loads(done.read_text()))
    tmp = partial / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info(f"[bold]probe {name}[/]" + (" (steered)" if side == "steered" else ""))
    ctx = context(audit, name, tmp, steered=side == "steered", load=loader)
    result = probe_module(name).run(ctx)
    if audit.steering is not None and not PROBES[name].generates:
        result.caveats.append("scored by likelihood of fixed text: generation steering does not apply")
    # paths the probe recorded name its work folder; they are kept at <out>/<folder> in the report
    record = relocated(result.to_dict(), str(tmp), str(audit.out / folder.name))
    write_json(tmp / "result.json", record)
    os.replace(tmp, folder)
    return result_from_dict(record)


def relocated(value: Any, old: str, new: str) -> Any:
    """`value` with every `old` path prefix in its strings replaced by `new`."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: relocated(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relocated(v, old, new) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null: results.json and --json stay strict JSON (a group of one item
    has no interval)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class _Loader:
    """The model, loaded on first use and shared by every in-process probe."""

    def __init__(self, model: Path, device: str):
        self.model, self.device, self.loaded = model, device, None

    def __call__(self):
        if self.loaded is None:
            from llmforge.generation.loading import load_for_generation

            self.loaded = load_for_generation(self.model, self.device)
        return self.loaded


def fingerprint(audit: Audit) -> str:
    """What must be equal for a killed audit's finished probes to be reused: the model's weights (by size and
    modification time), the data files (the same), the settings and the steering."""
    weights = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in audit.model.iterdir()
        if p.suffix in (".safetensors", ".bin")
    )
    key = {
        "model": str(audit.model.resolve()),
        "weights": weights,
        "bias": audit.cfg.model_dump(mode="json"),
        "probes": audit.probes,
        "steering": audit.steering.to_dict() if audit.steering is not None else None,
        "data": _data_stamps(audit),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _open_partial(partial: Path, key: str) -> None:
    stamp = partial / ".fingerprint"
    if partial.is_dir() and (not stamp.is_file() or stamp.read_text() != key):
        warn(f"{partial}: an interrupted audit with other settings; starting over")
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


def result_from_dict(d: dict[str, Any]) -> ProbeResult:
    d = dict(d)
    d["groups"] = [GroupScore(**g) for g in d.get("groups", [])]
    d["intervals"] = {k: tuple(v) for k, v in d.get("intervals", {}).items()}
    return ProbeResult(**d)


def _audit_caveats(audit: Audit) -> list[str]:
    out = []
    if audit.cfg.limit is not None:
        out.append(
            f"each probe read at most {audit.cfg.limit} items (--limit; co-occurrence samples at least one "
            "continuation per template): intervals are wide"
        )
    return out


def results_document(
    audit: Audit, results: dict[str, dict[str, ProbeResult]], caveats: list[str]
) -> dict[str, Any]:
    """results.json: per probe its unsteered result; with steering, the steered one and the deltas beside it."""
    probes = {name: sides["unsteered"].to_dict() for name, sides in results.items()}
    steered = {name: sides["steered"].to_dict() for name, sides in results.items() if "steered" in sides}
    return {
        "model": str(audit.model.resolve()),
        "probes": probes,
        "steered": steered,
        "steer": audit.steering.to_dict() if audit.steering is not None else None,
        "skipped": audit.skipped,
        "settings": audit.cfg.model_dump(mode="json", exclude_none=True),
        "caveats": caveats,
    }


def _data_paths(audit: Audit) -> list[Path]:
    paths = [_data_path(name, context(audit, name, audit.out)) for name in audit.probes]
    return [p for p in paths if p is not None and p.exists()]


def _data_stamps(audit: Audit) -> list[tuple[str, int, int]]:
    files = []
    for path in _data_paths(audit):
        files += [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _data_inputs(audit: Audit) -> list[Path]:
    """The probes' data that are artifacts (with a manifest), for the report's lineage."""
    return [p for p in _data_paths(audit) if (p / MANIFEST).exists()]


def _stats(document: dict[str, Any]) -> dict[str, Any]:
    stats: dict[str, Any] = {"probes": len(document["probes"])}
    for name, result in document["probes"].items():
        for metric, value in result["metrics"].items():
            if isinstance(value, (int, float)):
                stats[f"{name}.{metric}"] = value
    return stats


def summary_rows(document: dict[str, Any]) -> dict[str, str]:
    """Probe metric -> "value [low, high] (ideal x)", steered values after an arrow."""
    from llmforge.bias.report import fmt_metric

    rows = {}
    for name, result in document["probes"].items():
        steered = document["steered"].get(name)
        for metric in result["metrics"]:
            text = fmt_metric(result, metric)
            if steered and metric in steered["metrics"]:
                text += f"  →  steered {fmt_metric(steered, metric)}"
            rows[f"{name} {metric}"] = text
    for name, why in document["skipped"].items():
        rows[f"{name}"] = f"skipped: {why}"
    rows["report"] = document.get("report", "")
    return rows
