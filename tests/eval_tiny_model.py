"""A tiny llama + byte-level BPE tokenizer saved as a Hugging Face model dir (for the eval tests and benchmark)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(
    out: Path,
    text_file: Path,
    *,
    vocab_size: int = 512,
    context: int = 512,
    seed: int = 0,
    bos_token: str | None = None,
) -> Path:
    """Train a byte-level BPE on `text_file`, build a 2-layer d=64 LlamaForCausalLM, save both to `out`.

    By default BOS is EOS (GPT-2's convention, what llmforge's checkpoints declare); `bos_token` gives the
    tokenizer a BOS of its own (id 0), as a checkpoint of an older tokenizer has."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[bos_token, "<|endoftext|>"] if bos_token else ["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = Path(text_file).read_text(encoding="utf-8")[:200_000]
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token=bos_token or "<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
