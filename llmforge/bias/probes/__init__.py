"""The probe registry: name -> module (imported only when that probe runs) and the public data it reads by
default under `--data-dir`. Adding a probe is one file here plus one line below (and its `[bias.<name>]` keys in
`bias/config.py`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class ProbeSpec:
    module: str
    data: str  # its default data file or folder, relative to the data dir
    generates: bool = False  # samples text: steering applies, and it runs before and after a --steer config
    data_key: str = "path"  # the `[bias.<probe>]` key that points at other data than the default


PROBES: dict[str, ProbeSpec] = {
    "crows_pairs": ProbeSpec("llmforge.bias.probes.crows_pairs", "crows_pairs/crows_pairs_anonymized.csv"),
    "stereoset": ProbeSpec("llmforge.bias.probes.stereoset", "stereoset/dev.json"),
    "bbq": ProbeSpec("llmforge.bias.probes.bbq", "bbq/bbq_sample.jsonl"),
    "winobias": ProbeSpec("llmforge.bias.probes.winobias", "winobias", data_key="dir"),
    "ethos": ProbeSpec("llmforge.bias.probes.ethos", "ethos/Ethos_Dataset_Binary.csv"),
    "toxicity": ProbeSpec("llmforge.bias.probes.toxicity", "bold", generates=True),
    "cooccurrence": ProbeSpec("llmforge.bias.probes.cooccurrence", "winobias", generates=True),
}


def probe_module(name: str) -> ModuleType:
    return importlib.import_module(PROBES[name].module)
