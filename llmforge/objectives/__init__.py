"""Training objectives, shared by pretrain (the loss) and eval (perplexity): how token windows become model
inputs and targets. The data side is numpy (span corruption, masking tables); torch is imported inside the
functions that need it, so importing this package stays light.

    clm              next-token prediction over windows of seq_len + 1 tokens
    mlm              masked LM (BERT's 80/10/10 rule, optional whole-word masking)
    span-corruption  T5's span corruption (Raffel et al. 2020, §3.1.4)
"""
