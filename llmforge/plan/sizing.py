"""`llmforge plan`: one sizing question answered by the chosen method, every other method for comparison,
optionally inference-aware sizing and the time and cost of the run."""

from __future__ import annotations

from dataclasses import dataclass

from llmforge.console import UserError
from llmforge.plan.hardware import training_cost
from llmforge.plan.inference_aware import inference_aware
from llmforge.plan.scaling_laws import HOFFMANN_APPROACH3, LOSS_LAWS, METHODS, Allocation, allocate

AGREEMENT_TOLERANCE = 0.05  # two given quantities must agree with the method within 5%


@dataclass(frozen=True)
class SizingInput:
    flops: float | None = None
    params: float | None = None
    tokens: float | None = None

    def given(self) -> dict[str, float]:
        return {
            k: v for k, v in (("flops", self.flops), ("params", self.params), ("tokens", self.tokens)) if v
        }


_OPTION = {"flops": "--compute", "params": "--params", "tokens": "--tokens"}


def solve(method: str, given: SizingInput, ratio: float) -> Allocation:
    """The method's allocation from the first of compute, params, tokens given; the others must agree with it."""
    values = given.given()
    if not values:
        raise UserError(
            "give one of --compute FLOPS, --params N or --tokens D (e.g. llmforge plan --compute 1e21)"
        )
    first, value = next(iter(values.items()))
    result = allocate(method, ratio=ratio, **{first: value})
    for key, other in list(values.items())[1:]:
        implied = getattr(result, key)
        if abs(other / implied - 1) > AGREEMENT_TOLERANCE:
            raise UserError(
                f"{_OPTION[first]} {value:.3g} and {_OPTION[key]} {other:.3g} disagree under {method}: "
                f"{_OPTION[first]} {value:.3g} implies {_OPTION[key]} {implied:.3g}; give only one of them"
            )
    return result


def plan_size(
    method: str,
    given: SizingInput,
    *,
    ratio: float = 20.0,
    inference_tokens: float | None = None,
    gpu: str | None = None,
    gpus: int = 1,
    mfu: float = 0.4,
    peak_tflops: float | None = None,
    price: float | None = None,
) -> dict:
    chosen = solve(method, given, ratio)
    first, value = next(iter(given.given().items()))
    report = chosen.to_dict()
    report["input"] = {first: value}
    report["methods"] = {m: allocate(m, ratio=ratio, **{first: value}).to_dict() for m in METHODS}
    if inference_tokens is not None:
        law = LOSS_LAWS.get(method, HOFFMANN_APPROACH3)
        report["inference_aware"] = {
            "loss_law": method if method in LOSS_LAWS else "approach3",
            **inference_aware(law, chosen.params, chosen.tokens, inference_tokens).to_dict(),
        }
    if gpu is not None or peak_tflops is not None:
        report["cost"] = training_cost(
            chosen.flops, gpu_name=gpu, gpus=gpus, mfu=mfu, peak_tflops=peak_tflops, price_per_gpu_hour=price
        ).to_dict()
    return report
