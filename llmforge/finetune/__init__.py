"""`llmforge finetune`: adapt a pretrained checkpoint to a task (today: sequence classification with an encoder)."""
