"""Experiment trackers (`report_to` in a recipe): extra views of a run; the run folder stays the contract.

The Trainer's own integrations do the logging; this module only decides, before launch and in the
worker, where each tracker writes and that none of them can wait for a login prompt in a detached run:

  tensorboard  event files under RUN/tensorboard/STAGE (TENSORBOARD_LOGGING_DIR)
  wandb        files under RUN/wandb (WANDB_DIR); without credentials (WANDB_API_KEY, or an api.wandb.ai
               entry in ~/.netrc) and without WANDB_MODE set, it runs in offline mode and says so
               (`wandb sync RUN/wandb/offline-run-*` uploads it later)
  mlflow       a file store at RUN/mlruns unless MLFLOW_TRACKING_URI names a server
  trackio      its own local store (trackio decides where); project = the run's name
A tracker whose package is not installed is refused before launch (exit 2, with the pip command).
Nothing here imports torch or a tracker package.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
# the package each tracker needs, and the check for it, live with the recipe loader (training/recipe_load.py)
from training.recipe_load import TRACKER_PACKAGE as PACKAGE, missing_packages



def wandb_has_credentials(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    try:
        path = env.get("NETRC") or str(Path(env.get("HOME", str(Path.home()))) / ".netrc")
        host = (env.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def tracker_env(report_to: list[str], run_dir: Path, stage: str, run_name: str,
                env: dict | None = None) -> tuple[dict[str, str], list[str]]:
    """(environment variables to set for this stage's Trainer, notes to show the user)."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    notes: list[str] = []
    if "tensorboard" in report_to:
        out["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard" / stage)
    if "wandb" in report_to:
        out["WANDB_DIR"] = str(run_dir)
        out.setdefault("WANDB_PROJECT", env.get("WANDB_PROJECT") or "tune-wizard")
        out["WANDB_NAME"] = f"{run_name}-{stage}"
        out["WANDB_SILENT"] = "true"
        if not env.get("WANDB_MODE") and not wandb_has_credentials(env):
            out["WANDB_MODE"] = "offline"  # never a login prompt in a process without a terminal
            notes.append(f"wandb: no credentials (WANDB_API_KEY or ~/.netrc), so it logs offline into {run_dir}/wandb; "
                         f"upload later with `wandb sync {run_dir}/wandb/offline-run-*`, or set WANDB_API_KEY")
    if "mlflow" in report_to and not env.get("MLFLOW_TRACKING_URI"):
        out["MLFLOW_TRACKING_URI"] = (run_dir / "mlruns").resolve().as_uri()
        out.setdefault("MLFLOW_EXPERIMENT_NAME", run_name)
    if "trackio" in report_to:
        out.setdefault("TRACKIO_PROJECT", run_name)
    return out, notes
