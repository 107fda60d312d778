"""Full training's master-weights modes on this machine: step time and how many weights an lr 1e-5 run moves.

The tiny demo model (bf16-representable weights), the same random token batch, AdamW at lr 1e-5 with a
constant schedule, for each mode:
    fp32 (baseline)       fp32 weights, no autocast: the CPU's `precision: auto`
    fp32 master + bf16    fp32 weights under bf16 autocast (`precision: bf16`, `master_weights: fp32`)
    bf16 + Kahan          bf16 weights, torch-optimi AdamW(kahan_sum=True) (`master_weights: bf16_kahan`)
    bf16 plain            bf16 weights, torch AdamW: the old engine's mode, for comparison only
Prints the median step time (forward, backward, optimizer) and its ratio to the fp32 baseline measured in
the same run, and the fraction of 2-D weights that differ from the start after the timed steps.

    python bench/precision.py [--steps 10] [--batch 4] [--seq 256]
"""
from __future__ import annotations

import argparse
import statistics
import time


def run_mode(mode: str, steps: int, batch: int, seq: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from training.demo import resolve_builtin

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_builtin("builtin:tiny-llama"), dtype=torch.bfloat16)
    start = {n: p.detach().float().clone() for n, p in base.named_parameters() if p.dim() == 2}
    model = base.float() if mode in ("fp32", "fp32_master_bf16") else base
    params = [p for p in model.parameters() if p.requires_grad]
    if mode == "bf16_kahan":
        from optimi import AdamW
        opt = AdamW(params, lr=1e-5, weight_decay=0.0, kahan_sum=True)
    else:
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, model.config.vocab_size, (batch, seq), generator=g)
    autocast = mode == "fp32_master_bf16"
    times = []
    for i in range(steps + 2):  # two warm-up steps, not timed
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t)
    moved = sum(int((p.detach().float() != start[n]).sum()) for n, p in model.named_parameters() if n in start)
    total = sum(v.numel() for v in start.values())
    return {"median_s": statistics.median(times), "moved": moved / total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    a = ap.parse_args()
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch} x {a.seq}, "
          f"{a.steps} timed steps at lr 1e-5 (after 2 warm-up steps)")
    rows = {m: run_mode(m, a.steps, a.batch, a.seq) for m in ("fp32", "fp32_master_bf16", "bf16_kahan", "bf16_plain")}
    base = rows["fp32"]["median_s"]
    print(f"{'mode':<20} {'median step s':>14} {'vs fp32':>8} {'weights moved':>14}")
    for m, r in rows.items():
        print(f"{m:<20} {r['median_s']:>14.3f} {r['median_s'] / base:>8.2f} {r['moved']:>13.1%}")


if __name__ == "__main__":
    main()
