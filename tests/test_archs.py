"""The architecture registry: every family's formulas equal what the model transformers builds from its config has
(parameters) and does (FLOPs, counted by torch), and its module names exist in that model."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import llmforge.archs as archs
from llmforge.archs import ARCHS, FAMILIES, Family, Shape, family, family_of_model_type
from llmforge.console import UserError

TINY = {"n_layers": 2, "d_model": 64, "n_heads": 4, "vocab_size": 1000, "seq_len": 32}
# (arch, tied, extra Shape fields): tied and untied where the family allows both, GQA, a position table larger
# than the sequence, and a T5 with more decoder than encoder layers and a shorter target than input.
CASES = [
    ("gpt2", True, {}),
    ("gpt2", False, {"context": 48}),
    ("llama", False, {"n_kv_heads": 2}),
    ("llama", True, {"ffn_dim": 176}),
    ("gpt-neox", False, {}),
    ("gpt-neox", True, {}),
    ("bert", True, {"context": 48}),
    ("t5", False, {"n_decoder_layers": 3, "target_len": 12}),
    ("t5", True, {"relative_attention_buckets": 16}),
]
IDS = [f"{arch}-{'tied' if tied else 'untied'}-{'-'.join(extra) or 'plain'}" for arch, tied, extra in CASES]
PAD, BOS, EOS = 0, 1, 2


def shape(arch: str, tied: bool, extra: dict) -> Shape:
    return Shape(arch, tied=tied, **TINY, **extra)


def build(s: Shape, attn: str = "eager", **options):
    fam = family(s.arch)
    config = fam.hf_config(s, bos_id=BOS, eos_id=EOS, pad_id=PAD, init_std=0.02, options=options)
    return fam.build(config, attn_implementation=attn)


def unique_params(model):
    return {id(p): p for p in model.parameters()}.values()


def test_every_family_has_a_case():
    assert {arch for arch, _, _ in CASES} == set(ARCHS)


@pytest.mark.parametrize(("arch", "tied", "extra"), CASES, ids=IDS)
def test_param_counts_equal_the_built_model(arch, tied, extra):
    torch = pytest.importorskip("torch")
    s = shape(arch, tied, extra)
    model = build(s)
    counts = family(arch).param_counts(s)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["vectors"] == sum(p.numel() for p in model.parameters() if p.dim() == 1)
    lookups = {
        id(p): p.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    tables = sum(v for k, v in counts.items() if k.endswith("_embedding") and k != "non_embedding")
    assert tables == sum(lookups.values())
    head = model.get_output_embeddings().weight
    assert counts["lm_head"] == (0 if head is model.get_input_embeddings().weight else head.numel())
    for key in ("non_embedding", "layers", "per_layer", "final_norm"):
        assert key in counts


@pytest.mark.parametrize(("arch", "tied", "extra"), CASES, ids=IDS)
def test_flops_per_token_equal_torch_flop_counter(arch, tied, extra):
    """One forward + backward, eager attention (QKᵀ and AV are matmuls the counter sees). The counter counts
    matrix products only: `matmul` is exact, `train` adds 6 FLOPs per norm gain and bias and token (PaLM's 6N)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    s = shape(arch, tied, extra)
    model = build(s)
    batch = 2
    ids = torch.randint(3, s.vocab_size, (batch, s.seq_len))
    labels = torch.randint(3, s.vocab_size, (batch, s.targets))  # t5: the decoder's length
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=labels).loss.backward()
    flops = family(arch).flops_per_token(s)
    assert counter.get_total_flops() / (batch * s.seq_len) == flops["matmul"]
    assert flops["train"] == flops["dense"] + flops["attention"] > flops["matmul"]
    assert flops["forward"] == pytest.approx(flops["train"] / 3)
    assert flops["train"] == pytest.approx(flops["matmul"], rel=0.02)


@pytest.mark.parametrize("arch", ARCHS)
def test_module_names_exist_in_the_built_model(arch):
    """layer_classes are the blocks (one per layer, encoder and decoder), and every block holds at least two
    residual output projections (attention and MLP), each a 2-D weight the scaled init can reach."""
    s = shape(arch, family(arch).default_tied, {})
    fam = family(arch)
    model = build(s)
    blocks = [(n, m) for n, m in model.named_modules() if type(m).__name__ in fam.layer_classes]
    assert len(blocks) == s.n_layers + (s.decoder_layers if fam.encoder_decoder else 0)
    for block_name, block in blocks:
        projections = [
            m for n, m in block.named_modules(prefix=block_name) if n.endswith(fam.residual_projections)
        ]
        assert len(projections) >= 2, block_name
        assert all(m.weight.dim() == 2 for m in projections)
    names = [n for n, _ in model.named_modules()]
    for suffix in fam.residual_projections:
        assert any(n.endswith(suffix) for n in names), suffix


def test_import_and_formulas_need_no_torch():
    code = (
        "import sys, llmforge.archs as a\n"
        "for name, fam in a.FAMILIES.items():\n"
        "    s = a.Shape(name, 2, 64, 4, 1000, 32, fam.default_tied)\n"
        "    fam.param_counts(s); fam.flops_per_token(s)\n"
        "print([m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_family_is_one_module_and_one_line(tmp_path, monkeypatch):
    """Every module of the package but `base` is a family named in FAMILY_MODULES, and the loader needs nothing
    else: a toy family module in another package loads as is."""
    modules = {m.name for m in pkgutil.iter_modules(archs.__path__)} - {"base"}
    assert modules == set(archs.FAMILY_MODULES)
    assert all(isinstance(fam, Family) for fam in FAMILIES.values())
    package = tmp_path / "toyarchs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(
        "from llmforge.archs.base import Family\n"
        "class Toy(Family):\n    name = 'toy'\n    objective = 'clm'\n    model_type = 'toy'\n"
        "FAMILY = Toy()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(archs.load_families("toyarchs", ("toy",))) == ["toy"]


def test_lookups_by_name_and_model_type():
    assert family_of_model_type("gpt_neox").name == "gpt-neox"
    assert family_of_model_type("t5").objective == "span-corruption"
    assert family("bert").auto_class == "AutoModelForMaskedLM"
    assert ARCHS[0] == "gpt2"  # the CLI's choice message starts there
    with pytest.raises(UserError, match="choose one of gpt2, llama, gpt-neox, bert, t5"):
        family("rnn")
    with pytest.raises(UserError, match="model_type 'mamba'"):
        family_of_model_type("mamba")


@pytest.mark.parametrize(
    ("arch", "fields", "message"),
    [
        ("gpt2", {"n_kv_heads": 2}, "n_kv_heads applies to 'llama' only"),
        ("llama", {"n_decoder_layers": 2}, "applies to 't5' only"),
        ("llama", {"target_len": 8}, "encoder-decoder archs only"),
        ("bert", {"tied": False}, "cannot be untied"),
        ("gpt2", {"context": 16}, "longer than the context of 16"),
        ("t5", {"n_decoder_layers": 0}, "n_decoder_layers = 0"),
        ("nope", {}, "unknown architecture"),
    ],
)
def test_shape_refuses_what_the_family_does_not_take(arch, fields, message):
    with pytest.raises(UserError, match=message):
        Shape(arch, **{**TINY, "tied": True, **fields})


def test_default_ffn_widths_reproduce_published_models():
    assert family("llama").default_ffn(4096) == 11008  # LLaMA-7B
    assert family("t5").default_ffn(768) == 2048  # T5 v1.1-base
    assert family("t5").default_ffn(1024) == 2816  # T5 v1.1-large
    assert family("gpt2").default_ffn(768) == family("bert").default_ffn(768) == 3072


def test_published_sizes_equal_the_built_models():
    """BERT-base as a masked LM and T5 v1.1-base, built on the meta device (no memory)."""
    torch = pytest.importorskip("torch")
    bert = Shape("bert", 12, 768, 12, 30522, 512, True)
    t5 = Shape("t5", 12, 768, 12, 32128, 512, False)
    assert family("bert").param_counts(bert)["total"] == 109_514_298
    assert family("t5").param_counts(t5)["total"] == 247_577_856
    with torch.device("meta"):
        for s in (bert, t5):
            model = build(s, attn="sdpa")
            assert sum(p.numel() for p in model.parameters()) == family(s.arch).param_counts(s)["total"]


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_config_trains_deterministically_with_sdpa(arch):
    fam = family(arch)
    config = fam.hf_config(
        shape(arch, fam.default_tied, {}), bos_id=BOS, eos_id=EOS, pad_id=PAD, init_std=0.01, options={}
    )
    assert config.model_type == fam.model_type and config._attn_implementation == "sdpa"
    assert (config.eos_token_id, config.pad_token_id) == (EOS, PAD)
    dropouts = {
        k: v
        for k, v in config.to_dict().items()
        if "drop" in k and not k.startswith(("classifier", "summary"))
    }
    assert dropouts and all(v in (0, 0.0) for v in dropouts.values()), dropouts
    if arch != "t5":
        assert config.initializer_range == 0.01 and config.bos_token_id == BOS


def test_hf_config_reads_the_arch_options():
    s = shape("llama", False, {})
    assert build(s, rope_theta=5e5).config.rope_parameters["rope_theta"] == 5e5
    neox = build(shape("gpt-neox", False, {}), rotary_pct=0.5, rope_theta=2e4).config
    assert neox.rope_parameters["partial_rotary_factor"] == 0.5 and neox.use_parallel_residual
    t5 = build(
        shape("t5", False, {}), relative_attention_buckets=16, relative_attention_max_distance=64
    ).config
    assert (t5.relative_attention_num_buckets, t5.relative_attention_max_distance) == (16, 64)
    assert t5.feed_forward_proj == "gated-gelu" and t5.decoder_start_token_id == PAD
    assert t5.d_kv == 16 and t5.d_ff == family("t5").default_ffn(64)
    with pytest.raises(ValueError, match="relative_attention_buckets"):
        build(shape("t5", False, {"relative_attention_buckets": 8}), relative_attention_buckets=16)


def test_t5_untied_head_stays_untied_through_tie_weights_and_reload(tmp_path):
    """transformers 5 always ties T5's head to the shared embedding from a config; `build` unties it for v1.1,
    and the untied head survives a later tie_weights() (the trainer's init calls it) and save/load."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    s = shape("t5", False, {})
    model = build(s, attn="sdpa")
    model.tie_weights()
    assert model.lm_head.weight is not model.shared.weight
    assert model.encoder.embed_tokens.weight is model.shared.weight
    assert not model.config.scale_decoder_outputs  # v1.1: no d^-0.5 rescaling before the head
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["decoder_start_token_id"] == PAD
    loaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is not loaded.shared.weight
    assert sum(p.numel() for p in unique_params(loaded)) == family("t5").param_counts(s)["total"]
    ids = torch.randint(3, s.vocab_size, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, labels=ids).logits, loaded(input_ids=ids, labels=ids).logits)
