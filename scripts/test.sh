#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of torch and the project, then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q "torch==2.13.0"          # the CPU build; on a GPU box install your CUDA build instead
pip install -q -e ".[test]"
python -m pytest -q -p no:cacheprovider "$@"
