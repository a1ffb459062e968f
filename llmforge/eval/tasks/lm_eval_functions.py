"""lm-evaluation-harness's own task functions, for the offline YAMLs beside this file (`!function`).

`write_include_dir` copies this file next to the YAMLs that name it; llmforge re-implements no scoring.
"""

from lm_eval.api.metrics import f1_score
from lm_eval.tasks.bbq.utils import agg_accuracy_amb as bbq_agg_accuracy_amb
from lm_eval.tasks.bbq.utils import agg_accuracy_disamb as bbq_agg_accuracy_disamb
from lm_eval.tasks.bbq.utils import agg_amb_bias_scores as bbq_agg_amb_bias_scores
from lm_eval.tasks.bbq.utils import agg_disamb_bias_scores as bbq_agg_disamb_bias_scores
from lm_eval.tasks.bbq.utils import doc_to_choice as bbq_doc_to_choice
from lm_eval.tasks.bbq.utils import doc_to_target as bbq_doc_to_target
from lm_eval.tasks.bbq.utils import process_docs as bbq_process_docs
from lm_eval.tasks.bbq.utils import process_results_multiple_choice as bbq_process_results
from lm_eval.tasks.crows_pairs.utils import process_results as crows_pairs_process_results
from lm_eval.tasks.truthfulqa.utils import process_results_mc2
from lm_eval.tasks.wikitext.preprocess_wikitext import process_results as wikitext_process_results
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer


def f1_without_bootstrap(items):
    """lm-eval's binary F1 aggregation (sklearn's f1_score of (gold, pred) pairs, the positive class 1), under
    a name of its own: the harness bootstraps the stderr of its registered `f1` with 100,000 sklearn calls
    and prints a progress line to stdout (which `--json` reserves). The bias probe gives F1 an interval."""
    return f1_score(items)


__all__ = [
    "bbq_agg_accuracy_amb",
    "bbq_agg_accuracy_disamb",
    "bbq_agg_amb_bias_scores",
    "bbq_agg_disamb_bias_scores",
    "bbq_doc_to_choice",
    "bbq_doc_to_target",
    "bbq_process_docs",
    "bbq_process_results",
    "crows_pairs_process_results",
    "f1_without_bootstrap",
    "process_results_mc2",
    "wikitext_detokenizer",
    "wikitext_process_results",
]
