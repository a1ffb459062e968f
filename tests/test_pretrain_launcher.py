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
    assert "train.precision" not in launcher_settings(env)  # "no" is also what a config without it gives


def test_pure_bf16_plans_still_name_the_recipe_precision(tmp_path):
    env, plan = launcher_env(tmp_path, 1e8, 2, precision="bf16")
    check_launcher(train_with(recipe_overrides(plan, "bf16")), env)


def test_mismatch_names_every_key_and_the_overrides_that_fix_it():
    env = {**PLAIN, "ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}
    with pytest.raises(UserError) as error:
        check_launcher(TrainConfig(), env)
    message = str(error.value)
    assert "train.precision = 'fp32'" in message and "train.compile = False" in message
    assert "--set train.precision=bf16-mixed --set train.compile=true" in message


FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed"),
        ({"ACCELERATE_USE_MEGATRON_LM": "True"}, "Megatron"),
        ({"ACCELERATE_MIXED_PRECISION": "fp8"}, "fp8"),
        ({**FSDP2, "FSDP_OFFLOAD_PARAMS": "on"}, "offload"),  # accelerate's str_to_bool accepts "on"
        # what `accelerate config` writes for FSDP1 hybrid sharding: the strategy name in reshard_after_forward
        ({**FSDP2, "FSDP_RESHARD_AFTER_FORWARD": "hybrid_shard"}, "hybrid_shard"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "fsdp_version: 2"),
        ({"ACCELERATE_USE_PARALLELISM_CONFIG": "true", "PARALLELISM_CONFIG_TP_SIZE": "2"}, "tp_size"),
        ({"ACCELERATE_DYNAMO_BACKEND": "EAGER"}, "INDUCTOR"),
        ({"ACCELERATE_DYNAMO_BACKEND": "INDUCTOR", "ACCELERATE_DYNAMO_MODE": "max-autotune"}, "dynamo_mode"),
        ({"ACCELERATE_USE_FSDP": "maybe"}, "expected true or false"),
        ({**FSDP2, "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}, "fsdp_state_dict_type: SHARDED_STATE_DICT"),
    ],
    ids=[
        "deepspeed",
        "megatron",
        "fp8",
        "offload",
        "hybrid",
        "fsdp1",
        "tensor-parallel",
        "eager",
        "mode",
        "bad-bool",
        "sharded-state-dict",
    ],
)
def test_settings_without_a_code_path_are_refused(env, match):
    with pytest.raises(UserError, match=match):
        launcher_settings({**PLAIN, **env})


def test_fsdp2_sharding_and_checkpointing_map_onto_the_recipe():
    for reshard, sharding in (("true", "full-shard"), ("False", "shard-grad-op")):
        env = {
            **PLAIN,
            **FSDP2,
            "FSDP_RESHARD_AFTER_FORWARD": reshard,
            "FSDP_ACTIVATION_CHECKPOINTING": "true",
        }
        assert launcher_settings(env) == {
            "train.distributed.strategy": "fsdp",
            "train.distributed.fsdp_sharding": sharding,
            "train.activation_checkpointing": True,
        }


def test_fp16_with_fsdp_is_refused_when_planning(tmp_path):
    plan = plan_parallel(
        7e9, propose_shapes(7e9, count=1)[0], gpus=2, gpu=gpu("h100-sxm"), precision="fp16-mixed"
    )
    assert plan.strategy.zero
    with pytest.raises(UserError, match="bf16-mixed"):
        accelerate_config(plan, gpus_per_node=8, main_process_ip=None, precision="fp16-mixed")
