"""`llmforge review`: people label preference pairs and rate samples in a browser; the store is one SQLite
file, and every submission is also written out in the formats the other stages read (rlhf's preference
pairs, `eval ratings`' sheets)."""
