"""Recipes: strict validation with one-line errors, --set overrides, show round-trips."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from llmforge.console import UserError
from llmforge.recipe import load_recipe, parse_value, tomllib, validate_recipe

TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_tiny_recipe_is_valid():
    recipe = load_recipe(TINY)
    assert recipe.run.name == "tiny"
    assert recipe.run_dir == Path("runs") / "tiny"


def test_unknown_key_names_key_and_suggests(tmp_path):
    p = write(tmp_path, "[train]\nlrr = 1e-3\n")
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert str(e.value) == f"{p}: unknown key train.lrr (did you mean train.lr?)"


def test_unknown_table_suggests(tmp_path):
    p = write(tmp_path, "[trian]\nlr = 1e-3\n")
    with pytest.raises(UserError, match=r"unknown key trian \(did you mean train\?\)"):
        load_recipe(p)


def test_unknown_key_in_list_of_tables(tmp_path):
    p = write(
        tmp_path,
        """
        [[data.sources]]
        name = "a"
        type = "jsonl"
        path = "x.jsonl"
        wieght = 2
        """,
    )
    with pytest.raises(
        UserError, match=r"data\.sources\[0\]\.wieght \(did you mean data\.sources\[0\]\.weight\?\)"
    ):
        load_recipe(p)


def test_wrong_type_names_file_key_value_and_expectation(tmp_path):
    p = write(tmp_path, '[train]\nlr = "fast"\n')
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert str(e.value) == f'{p}: train.lr = "fast": expected a number'


def test_out_of_range_and_literal(tmp_path):
    p = write(tmp_path, "[train]\nlr = -1.0\n")
    with pytest.raises(UserError, match=r"train\.lr = -1\.0: expected a value greater than 0"):
        load_recipe(p)
    p = write(tmp_path, '[model]\narch = "mamba"\n')
    with pytest.raises(
        UserError, match=r"model\.arch = \"mamba\": expected one of 'llama', 'gpt-neox' or 'gpt2'"
    ):
        load_recipe(p)


def test_invalid_toml_and_missing_file(tmp_path):
    p = write(tmp_path, "[train\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(p)
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3e-4", 3e-4),
        ("1e21", 1e21),
        ("42", 42),
        ("true", True),
        ("False", False),
        ("[1, 2]", [1, 2]),
        ("[a, b]", ["a", "b"]),
        ('"x y"', "x y"),
        ("cosine", "cosine"),
        ("runs/x", "runs/x"),
    ],
)
def test_parse_value_coerces_types(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_set_overrides_apply_and_are_type_checked():
    recipe = load_recipe(
        TINY, ["train.lr=3e-4", "train.max_steps=7", "run.name=other", "model.tie_embeddings=false"]
    )
    assert recipe.train.lr == pytest.approx(3e-4)
    assert recipe.train.max_steps == 7
    assert recipe.run.name == "other"
    assert recipe.model.tie_embeddings is False
    with pytest.raises(UserError, match=r'train\.max_steps = "many": expected an integer'):
        load_recipe(TINY, ["train.max_steps=many"])
    with pytest.raises(UserError, match=r"unknown key train\.stepz"):
        load_recipe(TINY, ["train.stepz=3"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_recipe(TINY, ["train.lr"])


def test_show_round_trips():
    recipe = load_recipe(TINY, ["train.lr=1e-3"])
    again = validate_recipe(tomllib.loads(recipe.to_toml()))
    assert again.to_dict() == recipe.to_dict()


def test_cli_check_and_show(cli, tmp_path):
    ok = cli("recipe", "check", str(TINY))
    assert ok.returncode == 0, ok.stderr
    bad = cli("recipe", "check", str(write(tmp_path, "[train]\nlrr = 1\n")))
    assert bad.returncode == 2
    assert "train.lrr" in bad.stderr and "did you mean train.lr" in bad.stderr
    assert "Traceback" not in bad.stderr
    shown = cli("recipe", "show", str(TINY), "--set", "train.lr=2e-3", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["train"]["lr"] == pytest.approx(2e-3)
    toml_out = cli("recipe", "show", str(TINY))
    assert tomllib.loads(toml_out.stdout)["run"]["name"] == "tiny"


def test_set_indexes_lists_of_tables(tmp_path):
    p = write(
        tmp_path,
        """
        [[data.sources]]
        name = "a"
        type = "jsonl"
        path = "a.jsonl"
        """,
    )
    recipe = load_recipe(p, ["data.sources.0.path=b.jsonl", "data.sources.0.weight=2"])
    assert recipe.data.sources[0].path == "b.jsonl"
    assert recipe.data.sources[0].weight == 2.0
    with pytest.raises(UserError, match=r"data\.sources\.3: expected an index below 1"):
        load_recipe(p, ["data.sources.3.path=x"])
    with pytest.raises(UserError, match="is a list; name an item's key"):
        load_recipe(p, ["data.sources.0=x"])
