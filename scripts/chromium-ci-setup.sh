#!/usr/bin/env bash
# Install Debian's chromium for the headless-browser check of the comparison page
# (tests/compare/test_compare_report.py::test_html_renders_in_headless_chromium); idempotent.
# Needs root (or sudo) on Debian/Ubuntu. Without chromium that test is skipped with a reason.
set -euo pipefail

for tool in chromium chromium-browser; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "chromium-ci-setup: $("$tool" --version 2>/dev/null || echo "$tool") already installed"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium-ci-setup: apt-get not found; install chromium with your package manager" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "chromium-ci-setup: installed $(chromium --version)"
