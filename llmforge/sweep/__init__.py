"""`llmforge sweep` (hyperparameter search with Optuna: sampler, pruner, a study in a database) and `llmforge
ablate` (variants × seeds with Welch's t-test), both driving real stage runs as child processes.

space.py (the search space file) · stages.py (what a run of each stage is) · runner.py (one run: its recipe,
the child, its curve, stop) · study.py (Optuna: storage, sampler, pruner, objective, resume) · search.py (the
sweep and its report) · eval_metric.py (an eval task as the objective) · transfer.py (--scale-to) ·
ablation.py + significance.py (ablate) · plots.py · report_md.py · cli.py
"""
