#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of torch and the project, then run the built-in demo:
# continued pre-training then LoRA fine-tuning of a tiny model built locally, on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q "torch==2.13.0"
pip install -q -e .
tune-wizard --recipe recipes/demo.yaml
