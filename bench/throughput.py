"""Guide-style recipe vs the project's defaults: same model shape, same documents, one process.

    python bench/throughput.py [--json]            CPU: the demo's tiny Llama on the demo corpus and pairs
                                                   CUDA: Llama-3.2-1B CPT, Llama-3.1-8B QLoRA and full CPT shapes
    python bench/throughput.py --small [--json]    the CUDA parts on tiny shapes (CPU smoke test of that path)
    python bench/throughput.py --parts cpt,sft --steps 8 --warmup 2

Variants: <part>_guide, <part>_default and, for SFT, <part>_default_qv_only (the default's batches with the
guide's q/v adapters, which separates the batching gain from the cost of adapting every linear layer).
guide-style: documents/pairs truncated, micro-batches padded to the longest row, the guide's batch sizes
(CPT 4 x 8 accumulation, SFT 4), LoRA on q_proj/v_proj only, no fused kernels.
default: what training/runtime/defaults.py decides for the same recipe on this machine (CPT packing; SFT padding-free
bins with flash-attention, else length-grouped micro-batches; Liger; the micro-batch / checkpointing choice
from the memory estimate; LoRA on all linear layers), through the same packers and collators the stages use.
Each variant runs plain optimizer steps (forward, backward per micro-batch, fused AdamW on CUDA); the number is
the median over the timed steps of real (non-pad) tokens / step time. MFU counts 6N FLOPs per token for
full weights and 4N for LoRA plus attention (6 L h s), against the card's dense bf16 peak (CUDA only).
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import batches as B  # noqa: E402

PEAK_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "4090": 165}
SHAPES = {  # public configs of the models whose shapes bench/anchor_gpu.py uses (random init, no download)
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True, rope_theta=500000.0),
    "8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False, rope_theta=500000.0),
}
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=True)
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def flops_per_token(cfg: dict, seq: int, full: bool) -> float:
    h, L, i, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    n = L * (2 * h * h + 2 * h * kv + 3 * h * i) + V * h
    return (6 if full else 4) * n + 6 * L * h * seq


def peak_tflops() -> float | None:
    if DEV != "cuda":
        return None
    name = torch.cuda.get_device_name(0).upper()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def project_stage(stage: dict, cfg: dict):
    """The stage as the runner resolves it on this machine. micro_batch_size x grad_accum is the recipe's batch
    (rows per optimizer step), not a person's choice of micro-batch, so the chooser may split it."""
    from training.runtime.defaults import Machine, apply_defaults, detect
    from training.recipe_load import validate_data
    from training.plan.shapes import from_config
    recipe = validate_data({"name": "bench", "model": {"id": "bench"}, "stages": [stage]}, check_paths=False)
    st = recipe.stages[0]
    st.model_fields_set.difference_update({"micro_batch_size", "grad_accum"})
    machine = detect()
    if DEV != "cuda":  # a CPU run (or a CPU build of torch on a GPU box) is sized for the host
        machine = Machine(cuda=False, cpus=machine.cpus, host_mem_gib=machine.host_mem_gib)
    return st, apply_defaults(recipe, machine, from_config(cfg, "bench", "bench"))


def model_for(cfg: dict, attn: str, liger: bool, ckpt: bool, lora: str | list | None, quant_dir: str | None):
    from transformers import LlamaConfig, LlamaForCausalLM
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    torch.manual_seed(0)
    if quant_dir:  # QLoRA: 4-bit NF4 base, double quantization, bf16 compute (as training/runtime/stages/sft.py)
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        m = LlamaForCausalLM.from_pretrained(quant_dir, dtype=dtype, quantization_config=q, device_map={"": 0},
                                             attn_implementation=attn)
        m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=ckpt)
    else:
        with torch.device(DEV):
            m = LlamaForCausalLM._from_config(LlamaConfig(**cfg), attn_implementation=attn, dtype=dtype)
        if ckpt:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if lora:
                m.enable_input_require_grads()
    m.config.use_cache = False
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
        _apply_liger_kernel_to_instance(model=m)
    if lora:
        from peft import LoraConfig, get_peft_model
        m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=lora,
                                         task_type="CAUSAL_LM"))
    m.train()
    return m


def _step(model, opt, mbs) -> float:
    """One optimizer step (every micro-batch forward and backward, then AdamW); its wall time."""
    if DEV == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for mb in mbs:
        with torch.autocast(DEV, dtype=torch.bfloat16, enabled=DEV == "cuda"):
            out = model(**{k: (v.to(DEV, non_blocking=True) if torch.is_tensor(v) else v) for k, v in mb.items()})
        (out.loss / len(mbs)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if DEV == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _setup(make_model):
    model = make_model()
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                    fused=DEV == "cuda")


def measure_all(specs: list[tuple], warmup: int, fpt: float) -> list[dict]:
    """specs: (name, make_model, steps). Median real tokens/s over the timed optimizer steps, MFU, peak memory.
    On CUDA each variant runs alone (its own peak memory); on the CPU, which other processes share, the
    variants take turns step by step so that every one of them sees the same load."""
    timings = {name: [] for name, _, _ in specs}
    peaks = {}
    if DEV == "cuda":
        for name, make, steps in specs:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model, opt = _setup(make)
            timings[name] = [(real, _step(model, opt, mbs)) for mbs, real in steps]
            peaks[name] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            del model, opt
    else:
        live = [(name, *_setup(make), steps) for name, make, steps in specs]
        for i in range(max(len(steps) for *_, steps in live)):
            for name, model, opt, steps in live:
                if i < len(steps):
                    timings[name].append((steps[i][1], _step(model, opt, steps[i][0])))
        del live
    peak = peak_tflops()
    out = []
    for name, _, _ in specs:
        timed = timings[name][warmup:]
        tps = statistics.median(real / dt for real, dt in timed)
        r = {"variant": name, "real_tokens_per_s": round(tps, 1),
             "mfu": round(tps * fpt / (peak * 1e12), 4) if peak else None, "peak_mem_gib": peaks.get(name),
             "step_s_median": round(statistics.median(dt for _, dt in timed), 4), "timed_steps": len(timed)}
        log(json.dumps(r))
        out.append(r)
    return out


def run_part(part: str, small: bool, n_steps: int, warmup: int) -> tuple[list[dict], list]:
    """One guide-style vs default comparison. Returns (variants, the default's resolved settings)."""
    n = n_steps + warmup
    if part in ("cpt", "sft"):  # the demo's tiny Llama, the demo corpus and pairs, its tokenizer
        from transformers import AutoTokenizer
        from training.demo import resolve_builtin
        mdir = resolve_builtin("builtin:tiny-llama")
        tok = AutoTokenizer.from_pretrained(mdir)
        cfg = json.loads((Path(mdir) / "config.json").read_text())
        cfg = {k: cfg[k] for k in TINY if k in cfg}
        seq, kind, quant, shape = 256, ("full" if part == "cpt" else "lora"), None, "demo tiny-llama"
        data = B.demo_documents(tok) if part == "cpt" else B.demo_pairs(tok, seq)
        pad, eos = tok.pad_token_id, tok.eos_token_id
    else:  # cpt1b | qlora8b | cpt8b: the anchor shapes, random tokens with log-normal document lengths
        key = "1b" if part == "cpt1b" else "8b"
        cfg, shape = (dict(TINY) if small else dict(SHAPES[key])), (f"tiny ({key} path)" if small else key)
        seq = 256 if small else (1024 if part == "qlora8b" else 2048)
        kind = "full" if part.startswith("cpt") else ("qlora" if DEV == "cuda" else "lora")
        data = (B.synthetic_documents(600, cfg["vocab_size"], seq) if kind == "full"
                else B.synthetic_pairs(600, cfg["vocab_size"], seq))
        pad, eos = 0, 2
        quant = save_for_quantization(cfg) if kind == "qlora" else None
    full = kind == "full"
    if full:
        stage = {"type": "cpt", "data": ["bench"], "seq_len": seq, "micro_batch_size": 4, "grad_accum": 8}
    else:
        stage = {"type": "sft", "data": "bench.jsonl", "method": kind, "max_seq_len": seq, "micro_batch_size": 4}
    st, resolved = project_stage(stage, cfg)
    # the guide's 8B full-weight recipe (4 x 2048 padded rows, no checkpointing) needs far more than 80 GiB: skipped
    skip_guide = part == "cpt8b" and not small
    fpt = flops_per_token(cfg, seq, full)
    specs = []
    if not skip_guide:
        guide = B.padded_steps(B.as_pairs(data) if full else data, 4, 8 if full else 1, n, pad, seq)
        specs.append((f"{part}_guide", lambda: model_for(cfg, "sdpa", False, kind == "qlora",
                                                         None if full else ["q_proj", "v_proj"], quant), guide))
    if full:
        default = B.packed_cpt_steps(data, eos, seq, st.micro_batch_size, st.grad_accum, n)
    elif st.packing:
        default = B.packed_sft_steps(data, seq, st.micro_batch_size, st.grad_accum, n, pad)
    else:  # the fallback without flash-attention: length-grouped micro-batches padded to their longest pair
        default = B.padded_steps(data, st.micro_batch_size, st.grad_accum, n, pad, seq, grouped=st.group_by_length)
    attn = st.attention if st.attention != "auto" else "sdpa"
    specs.append((f"{part}_default", lambda: model_for(cfg, attn, bool(st.liger_kernel), st.gradient_checkpointing,
                                                       None if full else "all-linear", quant), default))
    if not full:  # the same batches with the guide's q/v adapters: the batching gain on its own
        specs.append((f"{part}_default_qv_only", lambda: model_for(
            cfg, attn, bool(st.liger_kernel), st.gradient_checkpointing, ["q_proj", "v_proj"], quant), default))
    out = measure_all(specs, warmup, fpt)
    out[1 - skip_guide]["settings"] = {
        "micro_batch_size": st.micro_batch_size, "grad_accum": st.grad_accum, "attention": attn,
        "gradient_checkpointing": st.gradient_checkpointing, "liger_kernel": st.liger_kernel, "seq": seq,
        "packing": st.packing, "group_by_length": getattr(st, "group_by_length", None),
        "shape": shape, "method": kind}
    base = out[0]["real_tokens_per_s"] if out[0]["variant"].endswith("_guide") else None
    for v in out:
        v["speedup_vs_guide"] = round(v["real_tokens_per_s"] / base, 2) if base else None
    return out, resolved


def save_for_quantization(cfg: dict) -> str | None:
    """bitsandbytes quantizes while loading, so the random-init model is saved once (CUDA only)."""
    if DEV != "cuda":
        return None
    from transformers import LlamaConfig, LlamaForCausalLM
    path = Path("/tmp/tw-bench-8b" if cfg["hidden_size"] > 1024 else "/tmp/tw-bench-tiny")
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        with torch.device("cuda"):
            m = LlamaForCausalLM._from_config(LlamaConfig(**cfg), dtype=torch.bfloat16)
        m.save_pretrained(path, max_shard_size="20GB")
        del m
        gc.collect()
        torch.cuda.empty_cache()
    return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--small", action="store_true", help="the CUDA parts on tiny shapes (CPU smoke test)")
    ap.add_argument("--parts", help="comma list of cpt, sft (demo) / cpt1b, qlora8b, cpt8b (anchor shapes)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant [10]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first [2]")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    if DEV == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    default_parts = "cpt1b,qlora8b,cpt8b" if (DEV == "cuda" or a.small) else "cpt,sft"
    parts = (a.parts or default_parts).split(",")
    variants, resolved = [], {}
    for part in parts:
        try:
            got, res = run_part(part, a.small, a.steps, a.warmup) if len(parts) == 1 else in_child(part, a)
            variants += got
            resolved[part] = res
        except Exception as e:  # one part failing (OOM on a smaller card) must not lose the others
            log(f"{part} failed: {type(e).__name__}: {e}")
            variants.append({"variant": f"{part}_default", "error": f"{type(e).__name__}: {str(e)[:300]}",
                             "real_tokens_per_s": None, "mfu": None, "peak_mem_gib": None, "speedup_vs_guide": None})
    from overhead import monitoring_overhead
    steps = [v["step_s_median"] for v in variants if v["variant"].endswith("_default") and v.get("step_s_median")]
    result = {"device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", "small": a.small,
              "versions": versions(), "date": time.strftime("%Y-%m-%d"), "variants": variants,
              "monitoring": monitoring_overhead(min(steps) if steps else None), "resolved_defaults": resolved}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{'variant':24} {'real tok/s':>11} {'MFU':>7} {'peak GiB':>9} {'speed-up':>9}")
        for v in variants:
            mfu = f"{100 * v['mfu']:.1f}%" if v.get("mfu") is not None else "-"
            print(f"{v['variant']:24} {v['real_tokens_per_s'] or '-':>11} {mfu:>7} "
                  f"{v['peak_mem_gib'] if v.get('peak_mem_gib') is not None else '-':>9} "
                  f"{v['speedup_vs_guide'] if v.get('speedup_vs_guide') else '-':>9}")
        print("monitoring:", json.dumps(result["monitoring"]))
    return 0


def in_child(part: str, a) -> tuple[list[dict], list]:
    """One part per process: Liger patches some functions module-wide, and a GPU starts each part empty."""
    import subprocess
    cmd = [sys.executable, __file__, "--json", "--parts", part, "--steps", str(a.steps), "--warmup", str(a.warmup)]
    res = subprocess.run(cmd + (["--small"] if a.small else []), stdout=subprocess.PIPE, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"exit status {res.returncode}")
    got = json.loads(res.stdout)
    return got["variants"], got["resolved_defaults"].get(part, [])


def versions() -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for p in ("torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel", "flash-attn"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
