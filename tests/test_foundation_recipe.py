"""Recipes: strict validation with one-line errors, --set overrides, show round-trips."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from llmforge.console import UserError
from llmforge.recipe import load_recipe, parse_value, tomllib, validate_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_tiny_recipe_is_valid():
    recipe = load_recipe(TINY)
    assert recipe.run.name == "tiny"
    assert recipe.run_dir == REPO / "runs" / "tiny"  # where `make demo` (RUN_DIR := runs/tiny) looks
    assert Path(recipe.eval.data_dir) == REPO.parent / "shared" / "data"  # the Makefile's SHARED_DATA


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
    with pytest.raises(UserError, match=r"data\.sources\[0\].*wieght.*weight"):
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
        UserError,
        match=r"model\.arch = \"mamba\": expected one of 'gpt2', 'llama', 'gpt-neox', 'bert' or 't5'",
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


def test_shown_toml_reloads_with_keys_that_apply_to_one_arch_only(tmp_path):
    """The defect: `recipe show` wrote every default (model.rotary_pct for a llama, the shape keys next
    to model.init_from), which the model table then refused when the shown recipe was run."""
    for text in ('[model]\narch = "llama"\n', f'[model]\ninit_from = "{tmp_path}"\n'):
        recipe = load_recipe(write(tmp_path, text))
        again = validate_recipe(tomllib.loads(recipe.to_toml()))
        assert again.to_dict() == recipe.to_dict()


def test_shown_toml_keeps_the_run_directory_when_saved_elsewhere(tmp_path, monkeypatch):
    recipe = load_recipe(write(tmp_path, "[train]\nlr = 1e-3\n"))
    copy = tmp_path / "elsewhere" / "copy.toml"
    copy.parent.mkdir()
    copy.write_text(recipe.to_toml())
    assert load_recipe(copy).run_dir == tmp_path / "runs" / "run"


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
    assert recipe.data.sources[0].path == str(Path.cwd() / "b.jsonl")
    assert recipe.data.sources[0].weight == 2.0
    with pytest.raises(UserError, match=r"data\.sources\.3: expected an index below 1"):
        load_recipe(p, ["data.sources.3.path=x"])
    with pytest.raises(UserError, match="is a list; name an item's key"):
        load_recipe(p, ["data.sources.0=x"])


# ------------------------------------------------------------------------------------ strict scalar types


def test_string_for_a_bool_is_refused_not_read_as_true(tmp_path):
    p = write(tmp_path, '[train]\ncompile = "yes"\n')
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert str(e.value) == f'{p}: train.compile = "yes": expected true or false'


def test_set_true_still_sets_a_bool_and_set_yes_is_refused():
    assert load_recipe(TINY, ["train.compile=true"]).train.compile is True
    assert load_recipe(TINY, ["train.compile=False"]).train.compile is False
    with pytest.raises(UserError, match=r'train\.compile = "yes": expected true or false'):
        load_recipe(TINY, ["train.compile=yes"])


def test_float_for_an_int_is_refused_not_truncated(tmp_path):
    with pytest.raises(UserError, match=r"train\.max_steps = 10\.5: expected an integer"):
        load_recipe(TINY, ["train.max_steps=10.5"])
    with pytest.raises(UserError, match=r"tokenizer\.vocab_size = 4096\.0: expected an integer"):
        load_recipe(write(tmp_path, "[tokenizer]\nvocab_size = 4096.0\n"))
    with pytest.raises(UserError, match=r"train\.max_steps = true: expected an integer"):
        load_recipe(TINY, ["train.max_steps=true"])


def test_string_for_a_number_is_refused_even_when_it_parses(tmp_path):
    with pytest.raises(UserError, match=r'train\.lr = "3e-4": expected a number'):
        load_recipe(write(tmp_path, '[train]\nlr = "3e-4"\n'))


def test_int_where_a_float_is_expected_is_fine():
    recipe = load_recipe(TINY, ["train.lr=1"])
    assert recipe.train.lr == 1.0 and isinstance(recipe.train.lr, float)


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "+inf"])
def test_non_finite_floats_are_refused(tmp_path, text):
    p = write(tmp_path, f"[train]\nlr = {text}\n")
    with pytest.raises(UserError, match=r"train\.lr = .*: expected a finite number"):
        load_recipe(p)
    with pytest.raises(UserError, match=r"train\.lr = .*: expected a finite number"):
        load_recipe(TINY, [f"train.lr={text}"])


def test_non_finite_float_in_a_list_and_in_any_table_is_refused():
    with pytest.raises(UserError, match=r"plan\.ladder_budgets\[1\] = nan: expected a finite number"):
        load_recipe(TINY, ["plan.ladder_budgets=[1e15, nan]"])
    with pytest.raises(UserError, match=r"tokenizer\.val_fraction = inf: expected a finite number"):
        load_recipe(TINY, ["tokenizer.val_fraction=inf"])


def test_a_field_may_opt_in_to_non_finite_floats():
    from pydantic import Field

    from llmforge.recipe_base import Table

    class Bounds(Table):
        upper: float = Field(0.0, allow_inf_nan=True)
        lower: float = 0.0

    assert Bounds.model_validate({"upper": float("inf")}).upper == float("inf")
    with pytest.raises(ValueError, match="finite"):
        Bounds.model_validate({"lower": float("-inf")})


# ------------------------------------------------------------------------------------ what a recipe is


def test_empty_recipe_is_refused(tmp_path):
    p = write(tmp_path, "# only a comment\n")
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert str(e.value).startswith(f"{p}: the recipe has no tables")


def test_directory_given_as_recipe_says_is_a_directory(tmp_path):
    with pytest.raises(UserError, match=r"is a directory, not a recipe file"):
        load_recipe(tmp_path)


# ------------------------------------------------------------------------------ paths (DESIGN.md §3a)

NESTED = """
[run]
name = "nested"
out_dir = "out"

[[data.sources]]
name = "local"
type = "jsonl"
path = "../corpus/a.jsonl"

[[data.sources]]
name = "hub"
type = "hf"
path = "HuggingFaceFW/fineweb-edu"

[[data.sources]]
name = "saved"
type = "hf"
path = "saved-dataset"

[[data.steps]]
type = "decontaminate"
eval_files = ["evals/piqa.jsonl"]

[model]
init_from = "~/models/base"

[eval]
data_dir = "../shared"
"""


@pytest.fixture
def nested_recipe(tmp_path) -> Path:
    folder = tmp_path / "project" / "recipes"
    (folder / "saved-dataset").mkdir(parents=True)
    (folder / "r.toml").write_text(NESTED)
    return folder / "r.toml"


def test_relative_paths_in_a_recipe_are_relative_to_the_recipe_file(nested_recipe, monkeypatch, tmp_path):
    folder = nested_recipe.parent
    for cwd in (tmp_path, folder, folder / "saved-dataset"):
        monkeypatch.chdir(cwd)
        recipe = load_recipe(Path("..") / "r.toml" if cwd.name == "saved-dataset" else nested_recipe)
        assert recipe.run_dir == folder / "out" / "nested"
        assert recipe.data.sources[0].path == str(folder.parent / "corpus" / "a.jsonl")
        assert recipe.eval.data_dir == str(folder.parent / "shared")
        assert recipe.model.init_from == str(Path.home() / "models" / "base")


def test_hf_hub_name_is_kept_and_a_local_hf_folder_is_resolved(nested_recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(nested_recipe)
    assert recipe.data.sources[1].path == "HuggingFaceFW/fineweb-edu"
    assert recipe.data.sources[2].path == str(nested_recipe.parent / "saved-dataset")


def test_step_option_paths_resolve_against_the_recipe(nested_recipe, monkeypatch, tmp_path):
    from llmforge.data.config import STEP_OPTIONS

    monkeypatch.chdir(tmp_path)
    step = load_recipe(nested_recipe).data.steps[0]
    options = STEP_OPTIONS[step.type].model_validate(step.model_extra, context=step.path_context())
    assert options.eval_files == [str(nested_recipe.parent / "evals" / "piqa.jsonl")]


def test_set_paths_are_relative_to_the_current_directory(nested_recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(
        nested_recipe, ["eval.data_dir=mine", "run.out_dir=runs", "data.steps.0.eval_files=[e.jsonl]"]
    )
    assert recipe.eval.data_dir == str(tmp_path / "mine")
    assert recipe.run_dir == tmp_path / "runs" / "nested"
    step = recipe.data.steps[0]
    from llmforge.data.config import STEP_OPTIONS

    options = STEP_OPTIONS[step.type].model_validate(step.model_extra, context=step.path_context())
    assert options.eval_files == [str(tmp_path / "e.jsonl")]


def test_out_dir_left_out_is_runs_beside_the_recipe(tmp_path, monkeypatch):
    p = write(tmp_path, '[run]\nname = "x"\n')
    monkeypatch.chdir("/")
    assert load_recipe(p).run_dir == tmp_path / "runs" / "x"


def test_absolute_paths_are_kept_and_shown_recipe_reloads_the_same(nested_recipe, tmp_path, monkeypatch):
    recipe = load_recipe(nested_recipe)
    shown = tmp_path / "elsewhere" / "shown.toml"
    shown.parent.mkdir()
    shown.write_text(recipe.to_toml())
    monkeypatch.chdir(tmp_path)
    assert load_recipe(shown).to_dict() == recipe.to_dict()


def test_recipe_paths_resolve_the_same_from_any_cwd_through_the_cli(cli, nested_recipe, tmp_path):
    """The defect: `eval.data_dir = "../shared/data"` was resolved against the directory llmforge ran in."""
    shown = [
        json.loads(cli("recipe", "show", str(nested_recipe), "--json", cwd=cwd).stdout)
        for cwd in (tmp_path, nested_recipe.parent)
    ]
    assert shown[0] == shown[1]
    assert shown[0]["eval"]["data_dir"] == str(nested_recipe.parent.parent / "shared")


def test_numbers_in_lists_and_tables_are_strict_too(tmp_path):
    with pytest.raises(UserError, match=r'plan\.ladder_budgets\[0\] = "1e15": expected a number'):
        load_recipe(TINY, ['plan.ladder_budgets=["1e15"]'])
    assert load_recipe(TINY, ["plan.ladder_budgets=[1e15, 3]"]).plan.ladder_budgets == [1e15, 3.0]


def test_set_paths_inside_inline_tables_are_relative_to_the_current_directory(
    nested_recipe, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(nested_recipe, ['data.sources=[{name="a", type="jsonl", path="corpus.jsonl"}]'])
    assert recipe.data.sources[0].path == str(tmp_path / "corpus.jsonl")


def test_a_missing_data_file_resolves_next_to_the_recipe_not_as_a_hub_name(
    nested_recipe, monkeypatch, tmp_path
):
    # `pairs.jsonl` cannot be a hub name: a missing one is named as a file beside the recipe (a clear
    # "no such file" later), where a bare `my-org/data` is still kept for the hub
    monkeypatch.chdir(tmp_path)
    text = nested_recipe.read_text().replace('path = "saved-dataset"', 'path = "later/pairs.jsonl"')
    nested_recipe.write_text(text)
    recipe = load_recipe(nested_recipe)
    assert recipe.data.sources[2].path == str(nested_recipe.parent / "later" / "pairs.jsonl")
    assert recipe.data.sources[1].path == "HuggingFaceFW/fineweb-edu"


def test_a_tables_own_check_is_prefixed_with_the_table(tmp_path):
    p = write(
        tmp_path, '[rlhf]\npolicy = "sft"\n[rlhf.ppo]\nreward_model = "rm"\nreward_fn = "exact_match"\n'
    )
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert str(e.value) == f"{p}: rlhf.ppo: give reward_model or reward_fn, not both"
