"""A shape proposed by `llmforge plan shape --toml` is a `[model]` table pretraining accepts as is."""

from __future__ import annotations

import re

import pytest

from llmforge.recipe import load_recipe


# llama 1e8 lands at 98.3M; the others within the 10% that `propose_shapes` allows (it trades size for the
# family's aspect ratio: gpt2 2e7 → 18.9M).
@pytest.mark.parametrize(
    ("arch", "target", "rel"), [("llama", 1e8, 0.03), ("gpt2", 2e7, 0.1), ("gpt-neox", 2e7, 0.1)]
)
def test_plan_shape_toml_builds_a_model_of_the_target_size(tmp_path, cli, arch, target, rel):
    from llmforge.pretrain.model import build_model

    shape = cli(
        "plan", "shape", "--params", str(target), "--arch", arch, "--vocab", "4096", "--seq", "256", "--toml"
    )
    assert shape.returncode == 0, shape.stderr
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[run]\nname = "shaped"\nout_dir = "{tmp_path}"\n\n{shape.stdout}')
    check = cli("recipe", "check", str(recipe))
    assert check.returncode == 0, check.stderr

    model_cfg = load_recipe(recipe).model
    assert model_cfg.arch == arch and model_cfg.vocab_size == 4096 and model_cfg.max_seq_len == 256
    model = build_model(model_cfg, model_cfg.vocab_size, eos_id=0, seed=0)
    params = sum(p.numel() for p in model.parameters())
    announced = int(re.search(r"([\d,]+) parameters", shape.stdout).group(1).replace(",", ""))
    assert params == announced  # the plan's exact count is the built model's
    assert params == pytest.approx(target, rel=rel)
