"""lm-evaluation-harness's own task functions, for the offline YAMLs beside this file (`!function`).

`write_include_dir` copies this file next to the YAMLs that name it; llmforge re-implements no scoring.
"""

from lm_eval.tasks.truthfulqa.utils import process_results_mc2
from lm_eval.tasks.wikitext.preprocess_wikitext import process_results as wikitext_process_results
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

__all__ = ["process_results_mc2", "wikitext_detokenizer", "wikitext_process_results"]
