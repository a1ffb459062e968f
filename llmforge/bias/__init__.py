"""`llmforge bias`: stereotype, toxicity and fairness probes of a causal LM, each a `report` artifact."""
