"""The Optuna study behind `llmforge sweep`: its storage, sampler and pruner, and the objective that runs
one trial as a real stage run (sweep/runner.py).

Resuming. The study lives in a database (SQLite under the sweep's folder by default, any SQLAlchemy URL
for one shared by several workers), so a sweep run again continues it: finished trials are never run
again, and a trial cut off by a kill is run again *from its own checkpoint* — the retried trial keeps the
params and the run directory of the trial it continues. A trial counts as cut off when its owner process
on this machine is gone (found at start-up), or when its heartbeat stops for `GRACE_S` (a worker on another
machine that died: Optuna's heartbeat).
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from llmforge.console import UserError
from llmforge.sweep.runner import RunOutcome, finished, run_recipe, run_stage, write_run_recipe
from llmforge.sweep.space import Param, SweepSpec
from llmforge.sweep.stages import Stage, final_value

HEARTBEAT_S = 30
GRACE_S = 120
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialFailed(Exception):
    """The stage run of a trial failed (its reason is the trial's `failure` attribute)."""


def open_storage(url: str, attempts: int = 5) -> RDBStorage:
    """The study's database; UserError (exit 2) when it cannot be opened, before any trial runs. Workers that
    start at once race to create the schema: the loser of that race tries again. SQLite writers wait for the
    lock (up to a minute) instead of failing."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(attempts):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    inherit_intermediate_values=True
                ),
            )
        except (IntegrityError, OperationalError) as e:
            if attempt == attempts - 1 or not _creation_race(e):
                _cannot_open(url, e)
            time.sleep(0.5 * (attempt + 1))
        except Exception as e:  # noqa: BLE001 - SQLAlchemy and Optuna raise many kinds for a bad URL
            _cannot_open(url, e)
    raise AssertionError("unreachable")


def _creation_race(e: Exception) -> bool:
    text = str(e)
    return "UNIQUE constraint" in text or "already exists" in text or "database is locked" in text


def _cannot_open(url: str, e: Exception) -> None:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"--storage {url}: cannot open the study database ({reason})") from None


class SeededPerTrial(optuna.samplers.BaseSampler):
    """Reseeds a random or TPE sampler at each trial from (sweep seed, trial number): a sweep reproduces, and
    a resumed sweep or a second worker on the same study draws new settings instead of replaying the first
    process's seeded draws (trial numbers are unique in a study)."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(self._seed + 1_000_003 * trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):  # optuna's signatures, delegated
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._inner.after_trial(study, trial, state, values)


def sampler_for(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "grid":  # exhaustive: it skips the points already visited by any worker
        return optuna.samplers.GridSampler(spec.grid(), seed=spec.seed)
    if spec.sampler == "random":
        return SeededPerTrial(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.seed)
    startup = max(2, min(10, spec.trials // 3))  # random trials before TPE models the space
    return SeededPerTrial(
        lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup), spec.seed
    )


def pruner_for(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """Median: stop a trial whose val loss at an eval step is worse than the median of earlier trials at that
    step (after `max(2, trials // 4)` trials have finished). Successive halving (Jamieson & Talwalkar 2016,
    as ASHA in Li et al. 2020): keep the best 1/4 at each rung."""
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, spec.trials // 4), n_warmup_steps=0)
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=4)
    return optuna.pruners.NopPruner()


def open_study(storage: RDBStorage, name: str, spec: SweepSpec) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's end is reported by the sweep itself
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.direction,
        sampler=sampler_for(spec),
        pruner=pruner_for(spec),
        load_if_exists=True,
    )
    if study.direction.name.lower() != spec.direction:
        raise UserError(f"study {name!r} in the storage {study.direction.name.lower()}s; this sweep file asks to "
                        f"{spec.direction} (use another --study name)")  # fmt: skip
    space = {p.key: p.to_dict() for p in spec.params}
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", space)
        study.set_user_attr("metric", spec.metric.name)
        for values in spec.first:
            study.enqueue_trial(values, skip_if_exists=True)
    elif stored != space or study.user_attrs.get("metric") != spec.metric.name:
        raise UserError(f"study {name!r} was started with another space or metric ({spec.source} changed); "
                        "its trials would not compare: use another --study name or --out")  # fmt: skip
    return study


def reclaim_orphans(study: optuna.Study) -> list[int]:
    """Trials cut off before they could finish — left RUNNING by a process of this machine that no longer
    exists (a killed sweep), or failed without a failure of their own (Ctrl-C) — are queued again with the
    same params, so they continue from their checkpoints. Returns their numbers."""
    storage = study._storage
    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    taken = []
    for t in trials:
        if t.number in retried or "failure" in t.user_attrs:
            continue
        if t.state == TrialState.RUNNING:
            owner = t.user_attrs.get("owner") or {}
            if owner.get("host") != host or _alive(owner.get("pid")):
                continue
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        elif t.state != TrialState.FAIL:
            continue
        RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(
            study, storage.get_trial(t._trial_id)
        )
        taken.append(t.number)
    return taken


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finished_count(study: optuna.Study) -> int:
    """Trials that count against the budget: complete, pruned, or failed on their own (not cut off by a
    kill: those are retried)."""
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in FINISHED or (t.state == TrialState.FAIL and "failure" in t.user_attrs):
            n += 1
    return n


def run_dir_of(out: Path, trial: optuna.Trial) -> Path:
    """A retried trial continues in the run directory of the trial it retries."""
    frozen = trial.study._storage.get_trial(trial._trial_id)
    history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
    return out / "trials" / f"trial-{(history[0] if history else trial.number):04d}"


def suggest(trial: optuna.Trial, p: Param) -> Any:
    if p.values:
        return trial.suggest_categorical(p.key, list(p.values))
    if p.type == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.type == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1))
    return trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)


@dataclass
class Objective:
    """Runs one trial: suggest, write its recipe, run the stage (reporting val loss at each eval step to the
    pruner), then the metric (the final val loss, or an eval task on the final checkpoint)."""

    spec: SweepSpec
    stage: Stage
    base: Path
    overrides: list[str]
    out: Path
    tokens: Path | None
    study_name: str
    on_trial: Any = None  # called with (number, state, value) after each trial, for the progress display

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        values = {p.key: suggest(trial, p) for p in self.spec.params}
        run_dir = run_dir_of(self.out, trial)
        trial.set_user_attr("run_dir", str(run_dir))
        tags = [f"sweep-{self.study_name}", f"trial-{trial.number}"]
        tracking = {"train.tracker_tags": tags, "train.tracker_group": f"sweep-{self.study_name}"}
        extra = tracking if self.stage.name == "pretrain" else {}
        write_run_recipe(
            run_recipe(self.base, self.overrides, run_dir, self.stage, {**values, **extra}), run_dir
        )
        done = finished(run_dir)
        outcome = RunOutcome("complete", done) if done else run_stage(self.stage, run_dir, self.tokens,
                                                                       self._pruning(trial))  # fmt: skip
        trial.set_user_attr("seconds", round(outcome.seconds, 2))
        if outcome.curve:
            trial.set_user_attr("curve", {str(k): v for k, v in sorted(outcome.curve.items())})
        if outcome.state == "stopped":
            self._notify(trial.number, "pruned", None)
            raise optuna.TrialPruned(f"val loss at step {max(outcome.curve)} is worse than the pruner allows")
        if outcome.state == "failed":
            trial.set_user_attr("failure", outcome.reason)
            self._notify(trial.number, f"failed ({outcome.reason})", None)
            raise TrialFailed(outcome.reason)
        results = outcome.results or {}
        trial.set_user_attr("results", _scalars(results))
        try:
            value = self._metric(run_dir, results)
        except TrialFailed as e:
            trial.set_user_attr("failure", str(e))
            self._notify(trial.number, f"failed ({e})", None)
            raise
        self._notify(trial.number, "complete", value)
        return value

    def _pruning(self, trial: optuna.Trial):
        def on_point(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        return on_point

    def _metric(self, run_dir: Path, results: dict[str, Any]) -> float:
        if not self.spec.metric.is_eval:
            value = final_value(self.stage, results)
            if value is None:
                raise TrialFailed(f"the {self.stage.name} results have no {self.stage.final_key}")
            return value
        from llmforge.sweep.eval_metric import eval_metric

        return eval_metric(self.spec.metric, run_dir, results)

    def _notify(self, number: int, state: str, value: float | None) -> None:
        if self.on_trial is not None:
            self.on_trial(number, state, value)


def _scalars(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if isinstance(v, (int, float, str, bool)) or v is None}
