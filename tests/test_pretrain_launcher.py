"""`accelerate launch --config_file` settings against the recipe: matched, refused, never silently ignored.

The launcher hands its config to each process as environment variables; these tests build that environment
with Accelerate's own code from the config `llmforge plan parallel` writes, so a change on either side shows.
"""

from __future__ import annotations

import pytest

from llmforge.console import UserError
from llmforge.plan.hardware import gpu
from llmforge.plan.parallel import accelerate_config, plan_parallel, recipe_overrides
from llmforge.plan.shapes import propose_shapes
from llmforge.pretrain.config import TrainConfig
from llmforge.pretrain.launch import check_launcher, launcher_settings
from llmforge.recipe import apply_override, validate_recipe

PLAIN = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_USE_CPU": "False"}


def launcher_env(tmp_path, params: float, gpus: int, precision: str = "bf16-mixed"):
    """The environment `accelerate launch --config_file` gives its processes, and the plan behind it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    plan = plan_parallel(
        params, propose_shapes(params, count=1)[0], gpus=gpus, gpu=gpu("h100-sxm"), precision=precision
    )
    path = tmp_path / "accelerate.yaml"
    path.write_text(accelerate_config(plan, gpus_per_node=8, main_process_ip=None, precision=precision))
    args, _, _ = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(path), "x"])
    )
    return prepare_multi_gpu_env(args), plan


def train_with(sets: list[str]) -> TrainConfig:
    raw: dict = {"train": {}}
    for item in sets:
        apply_override(raw, item)
    return validate_recipe(raw).table("train")


def test_a_plain_launch_asks_for_nothing_and_the_recipe_decides():
    assert launcher_settings(PLAIN) == {}
    check_launcher(TrainConfig(precision="bf16-mixed", compile=True), PLAIN)


@pytest.mark.parametrize(
    ("params", "gpus", "expected"),
    [
        (1e8, 2, {}),  # DDP: what a recipe does unless told otherwise
        (7e9, 8, {"train.distributed.strategy": "fsdp", "train.distributed.fsdp_sharding": "shard-grad-op"}),
        (
            7e9,
            2,
            {
                "train.distributed.strategy": "fsdp",
                "train.distributed.fsdp_sharding": "full-shard",
                "train.activation_checkpointing": True,
            },
        ),
    ],
    ids=["ddp", "zero2", "zero3+checkpointing"],
)
def test_plan_parallel_config_and_its_recipe_overrides_agree(tmp_path, params, gpus, expected):
    env, plan = launcher_env(tmp_path, params, gpus)
    assert launcher_settings(env) == {"train.precision": "bf16-mixed", **expected}
    check_launcher(train_with(recipe_overrides(plan, "bf16-mixed")), env)  # the printed --set lines match
    if expected:
        with pytest.raises(UserError, match=r"--set train\.distributed\.strategy=fsdp"):
            check_launcher(TrainConfig(precision="bf16-mixed"), env)


def test_config_precision_follows_the_plan(tmp_path):
    env, plan = launcher_env(tmp_path, 1e8, 2, precision="fp32")
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"
    assert "train.precision=fp32" in recipe_overrides(plan, "fp32")
    check_launcher(TrainConfig(precision="fp32"), env)


def test_mismatch_names_every_key_and_the_overrides_that_fix_it():
    env = {**PLAIN, "ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}
    with pytest.raises(UserError) as error:
        check_launcher(TrainConfig(), env)
    message = str(error.value)
    assert "train.precision = 'fp32'" in message and "train.compile = False" in message
    assert "--set train.precision=bf16-mixed --set train.compile=true" in message


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed"),
        ({"ACCELERATE_USE_MEGATRON_LM": "true"}, "Megatron"),
        ({"ACCELERATE_MIXED_PRECISION": "fp8"}, "fp8"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, "offload"),
        (
            {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1", "FSDP_SHARDING_STRATEGY": "HYBRID_SHARD"},
            "HYBRID",
        ),
    ],
    ids=["deepspeed", "megatron", "fp8", "offload", "hybrid-shard"],
)
def test_settings_without_a_code_path_are_refused(env, match):
    with pytest.raises(UserError, match=match):
        launcher_settings({**PLAIN, **env})


def test_fsdp_v1_sharding_strategies_map_onto_the_recipe():
    for strategy, sharding in (("FULL_SHARD", "full-shard"), ("2", "shard-grad-op")):
        env = {
            **PLAIN,
            "ACCELERATE_USE_FSDP": "true",
            "FSDP_VERSION": "1",
            "FSDP_SHARDING_STRATEGY": strategy,
        }
        assert launcher_settings(env)["train.distributed.fsdp_sharding"] == sharding
