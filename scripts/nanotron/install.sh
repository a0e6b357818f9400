#!/usr/bin/env bash
# Install nanotron in its own environment (never into propensity's: nanotron pins numpy<2, datatrove needs
# numpy>=2, and nanotron imports flash-attn even for its config module). Needs a CUDA machine with nvcc.
#
#   install.sh [TARGET_DIR] [COMMIT]
#
# PyPI's nanotron 0.4 (2024) is unusable: it fails to import (circular import) and predates datatrove data
# stages. We install from a pinned commit of huggingface/nanotron main instead.
set -euo pipefail

TARGET=${1:-$HOME/nanotron}
COMMIT=${2:-2411b022a75fb7f7561a1bb4166706da5e1b76de}   # main as of 2026-04-07, the one our schema mirrors

if [[ ! -d "$TARGET/.git" ]]; then
    git clone https://github.com/huggingface/nanotron.git "$TARGET"
fi
git -C "$TARGET" fetch --quiet origin && git -C "$TARGET" checkout --quiet "$COMMIT"
python3 -m venv "$TARGET/.venv"
# shellcheck disable=SC1091
source "$TARGET/.venv/bin/activate"
pip install --upgrade pip wheel setuptools packaging ninja
pip install torch --index-url https://download.pytorch.org/whl/cu124
pip install -e "$TARGET"                                   # core (pins numpy<2)
pip install datasets transformers "datatrove[io]" numba    # Nanoset data path; pip picks a numpy<2 datatrove
pip install ninja triton "flash-attn>=2.5.0,<2.7.0" --no-build-isolation
python - <<'PY'
import nanotron, flash_attn, torch
print("nanotron", nanotron.__file__, "flash_attn", flash_attn.__version__, "cuda", torch.cuda.is_available())
PY
echo "export NANOTRON_REPO=$TARGET NANOTRON_VENV=$TARGET/.venv"
