#!/usr/bin/env bash
# Install the Debian packages the Slurm tests need (slurmctld, slurmd, slurm-client, munge); idempotent.
# The packages' own start scripts are not used: tests/slurm starts a throw-away cluster itself
# (slurm/cluster.py). Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge)
tools=(slurmctld slurmd sbatch munged)

have_all() {
  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || return 1
  done
}

if have_all; then
  echo "slurm-ci-setup: Slurm and munge already installed ($(slurmctld -V 2>/dev/null || echo unknown version))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm-ci-setup: apt-get not found; install ${packages[*]} with your package manager" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}"
have_all || { echo "slurm-ci-setup: install finished but a tool is still missing" >&2; exit 1; }
echo "slurm-ci-setup: installed $(slurmctld -V)"
