"""Exact parameter counts (GPT-2 small, LLaMA-7B, Pythia) and shape proposals."""

from __future__ import annotations

import json

import pytest

from llmforge.console import UserError
from llmforge.plan.shapes import Shape, describe, flops_per_token, param_counts, propose_shapes


def test_gpt2_small():
    assert param_counts(Shape("gpt2", 12, 768, 12, 50257, 1024, True))["total"] == 124_439_808


def test_llama_7b():
    shape = Shape("llama", 32, 4096, 32, 32000, 2048, False)
    assert shape.ffn == 11008
    assert param_counts(shape)["total"] == 6_738_415_616


def test_pythia_160m_and_1b():
    assert param_counts(Shape("gpt-neox", 12, 768, 12, 50304, 2048, False))["total"] == 162_322_944
    assert param_counts(Shape("gpt-neox", 16, 2048, 8, 50304, 2048, False))["total"] == 1_011_781_632


@pytest.mark.parametrize(
    ("arch", "kw", "config"),
    [
        ("llama", {"n_kv_heads": 2, "ffn_dim": 176}, "llama"),
        ("gpt2", {}, "gpt2"),
        ("gpt-neox", {}, "gpt_neox"),
    ],
)
@pytest.mark.parametrize("tied", [True, False])
def test_counts_match_transformers(arch, kw, config, tied):
    """Against the real Hugging Face models built from tiny configs."""
    transformers = pytest.importorskip("transformers")
    shape = Shape(arch, 2, 64, 4, 1000, 128, tied, **kw)
    cfg = {
        "llama": lambda: transformers.LlamaConfig(
            vocab_size=1000,
            hidden_size=64,
            intermediate_size=176,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=tied,
        ),
        "gpt2": lambda: transformers.GPT2Config(
            vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128, tie_word_embeddings=tied
        ),
        "gpt_neox": lambda: transformers.GPTNeoXConfig(
            vocab_size=1000,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            tie_word_embeddings=tied,
        ),
    }[config]()
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert param_counts(shape)["total"] == sum(p.numel() for p in model.parameters())


def test_flops_per_token_match_a_hand_count():
    """2 layers × d 64, FFN 176, vocab 1000, seq 128, untied, counted by hand: per layer q,k,v,o 4·64·64 =
    16,384 and gate/up/down 3·64·176 = 33,792 weights, 2·64 norm weights; the output head 64,000 and the final
    norm 64. 6·N_matmul = 6·(2·50,304 + 64,000 + 64) = 988,032; attention 12·L·S·d = 12·2·128·64 = 196,608."""
    shape = Shape("llama", 2, 64, 4, 1000, 128, False, ffn_dim=176)
    f = flops_per_token(shape)
    assert (f["dense"], f["attention"], f["train"]) == (988_032, 196_608, 1_184_640)
    assert describe(shape)["flops_per_token"] == 1_184_640


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt-neox"])
def test_flops_per_token_match_torch_flop_counter(arch):
    """Against the FLOPs torch counts in one forward + backward of the real Hugging Face model (eager
    attention, so QKᵀ and AV are matmuls). The counter skips norm and bias weights, which 6·N counts as PaLM
    does: they are well under 1% of a model's FLOPs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    shape = Shape(arch, 2, 64, 4, 1000, 128, False)
    common = {"vocab_size": 1000, "tie_word_embeddings": False}
    cfg = {
        "llama": lambda: transformers.LlamaConfig(
            hidden_size=64, intermediate_size=shape.ffn, num_hidden_layers=2, num_attention_heads=4, **common
        ),
        "gpt2": lambda: transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **common),
        "gpt-neox": lambda: transformers.GPTNeoXConfig(
            hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, **common
        ),
    }[arch]()
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    ids = torch.randint(0, 1000, (2, 128))
    with FlopCounterMode(display=False) as counter:
        model(ids, labels=ids).loss.backward()
    measured = counter.get_total_flops() / ids.numel()
    assert measured == pytest.approx(flops_per_token(shape)["train"], rel=0.01)
    assert measured < flops_per_token(shape)["train"]  # only the norm/bias weights are missing


@pytest.mark.parametrize(
    ("target", "vocab"), [(2e6, 4096), (1e7, 8192), (1.2e8, None), (1e9, None), (7e10, None)]
)
def test_proposals_are_near_the_target(target, vocab):
    shapes = propose_shapes(target, vocab_size=vocab, count=3)
    assert 1 <= len(shapes) <= 3
    for shape in shapes:
        assert param_counts(shape)["total"] == pytest.approx(target, rel=0.1)
        assert shape.d_model % shape.n_heads == 0
        assert 16 <= shape.d_model / shape.n_layers <= 512


def test_no_shape_for_a_size_below_the_embeddings():
    with pytest.raises(UserError, match="lower --vocab"):
        propose_shapes(1e5, vocab_size=50000)


def test_invalid_shape_is_a_user_error():
    with pytest.raises(UserError, match="not divisible"):
        Shape("llama", 2, 100, 3, 1000, 128, False)


def test_model_toml_writes_every_key_whose_default_differs():
    from llmforge.plan.shapes import model_toml
    from llmforge.recipe import tomllib

    shape = Shape("llama", 4, 256, 8, 4096, 512, False, n_kv_heads=2)
    table = tomllib.loads(model_toml(shape))["model"]
    assert table == {
        "arch": "llama",
        "n_layers": 4,
        "d_model": 256,
        "n_heads": 8,
        "n_kv_heads": 2,
        "ffn_dim": shape.ffn,
        "vocab_size": 4096,
        "max_seq_len": 512,
        "tie_embeddings": False,
    }
    assert "n_kv_heads" not in tomllib.loads(model_toml(Shape("gpt2", 2, 64, 4, 100, 64, True)))["model"]


def test_cli_toml_and_json_exclude_each_other(cli):
    both = cli("plan", "shape", "--params", "1e7", "--json", "--toml")
    assert both.returncode == 2 and "not both" in both.stderr
    given = cli(
        "plan", "shape", "--arch", "gpt2", "--layers", "2", "--d-model", "64", "--heads", "4", "--toml"
    )
    assert given.returncode == 0 and 'arch = "gpt2"' in given.stdout and "n_layers = 2" in given.stdout


def test_encoder_and_encoder_decoder_shapes():
    """BERT-base as a masked LM and T5 v1.1-base, from the registry; t5's decoder depth is its own."""
    bert = Shape("bert", 12, 768, 12, 30522, 512, True)
    assert param_counts(bert)["total"] == 109_514_298
    t5 = Shape("t5", 12, 768, 12, 32128, 512, False)
    assert param_counts(t5)["total"] == 247_577_856 and t5.ffn == 2048
    shallow = Shape("t5", 12, 768, 12, 32128, 512, False, n_decoder_layers=4)
    decoder_block = param_counts(t5)["per_decoder_layer"]
    assert param_counts(t5)["total"] - param_counts(shallow)["total"] == 8 * decoder_block
    assert describe(shallow)["n_decoder_layers"] == 4 and describe(bert)["objective"] == "mlm"


def test_t5_flops_count_the_decoder_per_target_token():
    """Shorter targets cost less; per encoder input token, as the trainer counts tokens."""
    full = Shape("t5", 2, 64, 4, 1000, 128, False)
    short = Shape("t5", 2, 64, 4, 1000, 128, False, target_len=32)
    assert flops_per_token(short)["train"] < flops_per_token(full)["train"]


def test_proposals_for_every_family():
    for arch in ("bert", "t5"):
        for shape in propose_shapes(5e7, arch=arch, vocab_size=8192, seq_len=512, count=2):
            assert param_counts(shape)["total"] == pytest.approx(5e7, rel=0.1)
    fixed = propose_shapes(5e7, arch="t5", vocab_size=8192, seq_len=512, decoder_layers=2, count=1)[0]
    assert fixed.decoder_layers == 2 and param_counts(fixed)["total"] == pytest.approx(5e7, rel=0.1)


def test_model_toml_of_t5_and_bert():
    from llmforge.plan.shapes import model_toml
    from llmforge.recipe import tomllib

    t5 = tomllib.loads(model_toml(Shape("t5", 4, 256, 4, 4096, 512, False, n_decoder_layers=2)))["model"]
    assert (t5["arch"], t5["n_decoder_layers"], t5["tie_embeddings"]) == ("t5", 2, False)
    assert "n_decoder_layers" not in tomllib.loads(model_toml(Shape("t5", 2, 64, 4, 100, 64, False)))["model"]
    bert = tomllib.loads(model_toml(Shape("bert", 2, 64, 4, 100, 64, True, context=128)))["model"]
    assert bert["max_seq_len"] == 128 and bert["tie_embeddings"] is True


def test_cli_shape_of_t5_and_bert(cli):
    t5 = cli(*"plan shape --arch t5 --layers 12 --d-model 768 --heads 12 --json".split())
    assert t5.returncode == 0, t5.stderr
    assert json.loads(t5.stdout)["params"] == 247_577_856
    toml = cli(*"plan shape --arch t5 --params 2e7 --vocab 4096 --decoder-layers 3 --toml".split())
    assert toml.returncode == 0 and "n_decoder_layers = 3" in toml.stdout
    bert = cli(*"plan shape --arch bert --layers 2 --d-model 64 --heads 4 --json".split())
    assert json.loads(bert.stdout)["param_counts"]["lm_head_bias"] == 30522
    wrong = cli(*"plan shape --arch llama --layers 2 --d-model 64 --heads 4 --decoder-layers 2".split())
    assert wrong.returncode == 2 and "applies to 't5' only" in wrong.stderr
