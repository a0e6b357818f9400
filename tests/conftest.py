"""Shared test setup: no network, a throw-away HF cache, small thread counts."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="propensity-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
