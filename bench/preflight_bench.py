"""The preflight's projection against the real thing: `python bench/preflight_bench.py [--runs 3]`.

Each round runs `tune-wizard preflight recipes/demo.yaml --json` and then the demo itself
(`tune-wizard --recipe recipes/demo.yaml`), back to back so both see the same load on the machine, in a
temporary output_dir. It prints, per round and stage, the preflight's projected stage time beside the demo's
measured one (stage_end runtime_s: data, model, training, evaluations, checkpoints, the final save), the
preflight's own wall time beside the demo's, then the medians over the rounds and their ratios.
Target: projected within +-25% of measured; the preflight well under the demo's own time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tw(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TUNE_WIZARD_CALIBRATION", "off")  # the benchmark does not teach the user's calibration
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    return p, time.perf_counter() - t


def one_round(i: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as out:
        p, pf_wall = tw("preflight", "recipes/demo.yaml", "--json", "--set", f"output_dir={out}")
        if p.returncode != 0:
            sys.exit(f"preflight failed:\n{p.stderr[-2000:]}")
        report = json.loads(p.stdout)
        d, demo_wall = tw("--recipe", "recipes/demo.yaml", "--set", f"output_dir={out}")
        if d.returncode != 0:
            sys.exit(f"demo failed:\n{d.stderr[-2000:]}")
        run = next(x for x in Path(out).iterdir() if (x / "events.jsonl").exists())
        ev = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
        actual = {e["stage"]: e["runtime_s"] for e in ev if e["event"] == "stage_end"}
        load = os.getloadavg()[0]
    proj = {s["stage"]: s["projected_s"] for s in report["stages"]}
    row = {"round": i, "preflight_wall_s": pf_wall, "demo_wall_s": demo_wall, "load1": load,
           "projected_s": proj, "actual_s": actual,
           "tokens_per_s": {s["stage"]: s["tokens_per_s"] for s in report["stages"]},
           "peak_mem_gib": {s["stage"]: s["peak_mem_gib"] for s in report["stages"]}}
    print(f"round {i}: preflight {pf_wall:.0f} s wall, demo {demo_wall:.0f} s wall (load {load:.1f}); "
          + "; ".join(f"{k}: projected {proj[k]:.1f} s vs measured {actual.get(k, float('nan')):.1f} s "
                      f"({proj[k] / actual[k] - 1:+.0%})" for k in proj), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", metavar="FILE", help="also write the rounds here")
    a = ap.parse_args()
    rows = [one_round(i + 1) for i in range(a.runs)]
    med = statistics.median
    print("\nmedians over", len(rows), "rounds:")
    tot_p = med([sum(r["projected_s"].values()) for r in rows])
    tot_a = med([sum(r["actual_s"].values()) for r in rows])
    for k in rows[0]["projected_s"]:
        p, q = med([r["projected_s"][k] for r in rows]), med([r["actual_s"][k] for r in rows])
        print(f"  {k:<4} projected {p:7.1f} s   measured {q:7.1f} s   ratio {p / q:.2f}  "
              f"{'within' if abs(p / q - 1) <= 0.25 else 'OUTSIDE'} +-25%")
    print(f"  all  projected {tot_p:7.1f} s   measured {tot_a:7.1f} s   ratio {tot_p / tot_a:.2f}")
    pw, dw = med([r["preflight_wall_s"] for r in rows]), med([r["demo_wall_s"] for r in rows])
    print(f"  preflight wall {pw:.0f} s vs the demo's own wall {dw:.0f} s (ratio {pw / dw:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
