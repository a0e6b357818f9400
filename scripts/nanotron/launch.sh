#!/usr/bin/env bash
# Launch nanotron's run_train.py on a config written by the propensity train stage (backend: nanotron).
#
#   launch.sh CONFIG_YAML
#
# Environment:
#   NANOTRON_REPO    checkout of huggingface/nanotron (holds run_train.py)        [required]
#   NANOTRON_VENV    its virtualenv (see scripts/nanotron/install.sh)              [default: $NANOTRON_REPO/.venv]
#   GPUS_PER_NODE    processes per node (the stage sets dp*tp*pp / nodes)          [default: all visible GPUs]
#   MASTER_PORT      rendezvous port for multi-node runs                           [default: 29500]
#
# One node (no Slurm allocation, or SLURM_NNODES=1): torchrun --nproc_per_node=$GPUS_PER_NODE.
# Several nodes (inside an sbatch allocation with SLURM_NNODES>1): one srun task per node, each running
# torchrun with a c10d rendezvous on the first node of the allocation.
set -euo pipefail

CONFIG=${1:?usage: launch.sh CONFIG_YAML}
: "${NANOTRON_REPO:?set NANOTRON_REPO to a nanotron checkout (see docs/pretrain.md)}"
NANOTRON_VENV=${NANOTRON_VENV:-$NANOTRON_REPO/.venv}
TORCHRUN="$NANOTRON_VENV/bin/torchrun"
[[ -x "$TORCHRUN" ]] || { echo "launch.sh: $TORCHRUN not found; run scripts/nanotron/install.sh" >&2; exit 2; }
[[ -f "$NANOTRON_REPO/run_train.py" ]] || { echo "launch.sh: no run_train.py in $NANOTRON_REPO" >&2; exit 2; }
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
NNODES=${SLURM_NNODES:-1}
export CUDA_DEVICE_MAX_CONNECTIONS=1   # nanotron requires it for tensor-parallel overlap
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [[ "$NNODES" -le 1 ]]; then
    exec "$TORCHRUN" --nproc_per_node="$GPUS_PER_NODE" "$NANOTRON_REPO/run_train.py" --config-file "$CONFIG"
fi

MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}
exec srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
    "$TORCHRUN" --nnodes="$NNODES" --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="${SLURM_JOB_ID:-propensity}" \
    "$NANOTRON_REPO/run_train.py" --config-file "$CONFIG"
