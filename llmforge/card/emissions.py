"""CO2-equivalent emissions of training, only where the GPU-hours are known (Lacoste et al. 2019, "Quantifying
the Carbon Emissions of Machine Learning", the ML CO2 Impact calculator's formula):

    emissions (g CO2eq) = GPU-hours × board power (kW) × PUE × grid carbon intensity (g CO2eq / kWh)

- GPU-hours: pretraining's training time × processes (card/facts.py `Compute`); never for a CPU run.
- board power: the GPU's maximum board power (TDP) from its vendor datasheet, below, matched by the exact device
  name pretraining recorded. The draw averaged over training is at most this, so the figure is an upper bound for
  the power term. A GPU not in the table gives no estimate (`--gpu-watts` supplies one).
- PUE (data-centre power usage effectiveness) 1.0 unless `--pue` says otherwise: the GPUs' own draw only.
- grid intensity: `--grid-intensity`, default 475 g CO2eq/kWh, the world-average carbon intensity of electricity
  generation the IEA reported for 2019 (Global Energy & CO2 Status Report 2019). The real value for a region is
  anywhere from ~20 (hydro, nuclear) to ~900 (coal): give the one for the data centre when it is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_GRID_G_PER_KWH = 475.0
GRID_SOURCE = "IEA Global Energy & CO2 Status Report 2019: world average 475 g CO2eq/kWh"

# Maximum board power (W) by the exact torch.cuda.get_device_name() string, from the vendors' datasheets.
BOARD_WATTS: dict[str, float] = {
    "NVIDIA A100-SXM4-40GB": 400,
    "NVIDIA A100-SXM4-80GB": 400,
    "NVIDIA A100-PCIE-40GB": 250,
    "NVIDIA A100 80GB PCIe": 300,
    "NVIDIA H100 80GB HBM3": 700,
    "NVIDIA H100 PCIe": 350,
    "NVIDIA H200": 700,
    "NVIDIA L40S": 350,
    "NVIDIA L40": 300,
    "NVIDIA A10": 150,
    "Tesla V100-SXM2-32GB": 300,
    "NVIDIA GeForce RTX 4090": 450,
    "AMD Instinct MI250X": 560,
    "AMD Instinct MI300X": 750,
}


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def board_watts(device: str | None) -> float | None:
    if not device:
        return None
    wanted = _normalise(device)
    return next((w for name, w in BOARD_WATTS.items() if _normalise(name) == wanted), None)


@dataclass
class Emissions:
    grams: float
    gpu_hours: float
    watts: float
    watts_source: str
    pue: float
    grid_g_per_kwh: float
    grid_source: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(
    gpu_hours: float | None,
    device: str | None,
    *,
    gpu_watts: float | None = None,
    pue: float = 1.0,
    grid_g_per_kwh: float | None = None,
) -> tuple[Emissions | None, str]:
    """(the estimate, or None; a sentence saying how it was made or why there is none)."""
    if gpu_hours is None or not device:
        return None, "not estimated: the run's GPU-hours are not known (no GPU pretraining recorded)"
    watts, watts_source = (gpu_watts, "--gpu-watts") if gpu_watts else (board_watts(device), "datasheet TDP")
    if watts is None:
        return None, f"not estimated: no board power known for {device!r} (give --gpu-watts)"
    grid = DEFAULT_GRID_G_PER_KWH if grid_g_per_kwh is None else grid_g_per_kwh
    grid_source = GRID_SOURCE if grid_g_per_kwh is None else "--grid-intensity"
    grams = gpu_hours * watts / 1000 * pue * grid
    e = Emissions(grams, gpu_hours, watts, watts_source, pue, grid, grid_source, device)
    how = (
        f"{gpu_hours:.3g} GPU-hours × {watts:g} W ({watts_source}) × PUE {pue:g} × {grid:g} g CO2eq/kWh "
        f"({grid_source}) = {grams:.3g} g CO2eq"
    )
    return e, how
