"""`llmforge card` and `llmforge report`: a model card and a report card written from a run's own records."""
