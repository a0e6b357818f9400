"""Stands in for ``torchrun run_train.py --config-file CONFIG`` in the nanotron backend test.

Reads the YAML through the strict schema, checks the data view nanotron would read, and "trains" by saving
the reference weights at ``$FAKE_NANOTRON_STATE`` (a ``torch.save``d HF state dict) as nanotron would at
``train_steps``, with the model config taken from the YAML. Uses torch only (no transformers import: fast).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
from nanotron_fixtures import write_state

from pretrain.nanotron_config import load_yaml

config = load_yaml(Path(sys.argv[-1]))
dataset = config.data_stages[0].data.dataset
meta = next(Path(dataset.dataset_folder).glob("*.ds.metadata")).read_text().splitlines()[0]
assert meta.rpartition("|")[0] == dataset.tokenizer_name == config.tokenizer.tokenizer_name_or_path, meta
state = torch.load(os.environ["FAKE_NANOTRON_STATE"], weights_only=True)
model_config = dataclasses.asdict(config.model.model_config)
write_state(state, model_config, Path(config.checkpoints.checkpoints_path), config.tokens.train_steps)
print("GPUS_PER_NODE", os.environ["GPUS_PER_NODE"])
