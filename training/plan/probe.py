"""Gap probe: does the base model know the domain? Runs in its own process (`python -m training.plan.probe`);
callers use run_probe(), which never imports torch in the caller.

Measures:
  answers     the base model answers the user's domain prompts (greedy, max_new_tokens and max_time limits);
              the user's verdict on them (confuses domain rules / invents terms / right facts, wrong format /
              fine) is theirs to give (--gap, or the wizard's gap step)
  perplexity  on a sample of the corpus and on recipes/general_reference.txt (general prose written for this
              project); domain/reference ratio
  fertility   tokens per word on both; the domain words split into the most pieces
  retrieval   with a corpus and labeled pairs: does BM25 retrieval close the gap? (training/plan/retrieval.py:
              the answer loss with the question alone, with the top-k passages, with the answer itself)
Suggestion: a perplexity ratio above PPL_RATIO or a fertility ratio above FERTILITY_RATIO suggests a knowledge
gap (the model finds the domain's text surprising or its vocabulary foreign); otherwise no objective signal.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "recipes" / "general_reference.txt"
PPL_RATIO = 2.0
FERTILITY_RATIO = 1.3
SAMPLE_CHARS = 40_000   # of corpus text for perplexity and fertility
WINDOW = 512            # tokens per perplexity window


@dataclass
class GapFacts:
    answers: list = field(default_factory=list)   # {"prompt", "answer", "new_tokens", "seconds", "stopped_by"}
    ppl_domain: float = 0.0
    ppl_reference: float = 0.0
    ppl_ratio: float = 0.0
    fertility_domain: float = 0.0
    fertility_reference: float = 0.0
    fertility_ratio: float = 0.0
    split_terms: list = field(default_factory=list)  # [word, pieces], most pieces first
    suggested_gap: str | None = None
    summary: str = ""
    seconds: float = 0.0
    retrieval: dict | None = None  # training/plan/retrieval.py measure(), or {"error": ...}; None: not run

    def to_dict(self) -> dict:
        return asdict(self)


def suggest(ppl_ratio: float, fert_ratio: float) -> tuple[str | None, str]:
    hits = []
    if ppl_ratio > PPL_RATIO:
        hits.append(f"domain perplexity {ppl_ratio:.1f}x the reference (> {PPL_RATIO:g}x)")
    if fert_ratio > FERTILITY_RATIO:
        hits.append(f"domain words split into {fert_ratio:.2f}x more tokens (> {FERTILITY_RATIO:g}x)")
    if hits:
        return "knowledge", "; ".join(hits) + " -> suggests a knowledge gap"
    return None, (f"perplexity ratio {ppl_ratio:.2f}, fertility ratio {fert_ratio:.2f}: no objective sign of a "
                  f"knowledge gap; judge the answers")


def run_probe(model: str, prompts_file: str | None, corpus_paths: list[str], max_new_tokens: int = 96,
              time_limit: float = 30.0, timeout: float = 900.0, pairs_file: str | None = None,
              passages_k: int | None = None, progress=None) -> GapFacts:
    """Run the probe in a subprocess; RuntimeError with its last stderr line if it fails. With pairs_file
    (and a corpus) it also measures retrieval; progress(line) gets its "indexing ..." lines."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [sys.executable, "-m", "training.plan.probe", "--model", model, "--out", str(out),
               "--max-new-tokens", str(max_new_tokens), "--time-limit", str(time_limit)]
        if prompts_file:
            cmd += ["--prompts", prompts_file]
        if pairs_file:
            cmd += ["--pairs", pairs_file]
        if passages_k:
            cmd += ["--passages-k", str(passages_k)]
        cmd += ["--corpus", *corpus_paths] if corpus_paths else []
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]) + os.pathsep
                   + os.environ.get("PYTHONPATH", ""))
        import threading
        with tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            timer = threading.Timer(timeout, p.kill)  # a probe that hangs silently is killed all the same
            timer.start()
            try:
                for line in p.stderr:  # progress lines as they come; everything kept for the error message
                    err.write(line)
                    if progress and line.startswith("indexing"):
                        progress(line.strip())
                rc = p.wait()
            finally:
                timed_out = not timer.is_alive() and p.returncode not in (0, None) and rc == -9
                timer.cancel()
            err.seek(0)
            stderr = err.read()
        if timed_out:
            raise RuntimeError(f"the probe process ran past {timeout:.0f} s and was stopped")
        if rc != 0 or not out.exists():
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the probe process failed ({last})")
        return GapFacts(**json.loads(out.read_text()))


def retrieval_probe(model, tok, corpus: list[str], pairs_file: str, k: int) -> dict:
    """training/plan/retrieval.py on this model: index the corpus (progress on stderr), score the pairs."""
    import importlib.util
    from training.data import DataError
    from training.pairs import read_pairs
    from training.plan import retrieval
    if importlib.util.find_spec("bm25s") is None:
        return {"error": "the retrieval probe needs bm25s: pip install bm25s"}
    from training.recipe_load import expand_data
    try:
        rows = read_pairs(Path(pairs_file)).rows
    except DataError as e:
        return {"error": str(e)}
    pairs = retrieval.sample_pairs(rows)
    if not pairs:
        return {"error": f"{pairs_file}: no valid pairs to score"}
    files = [f for c in corpus for f in expand_data(c)]

    def progress(done: int, total: int) -> None:
        print(f"indexing corpus for retrieval: {done / 1e6:,.1f} / {total / 1e6:,.1f} MB", file=sys.stderr, flush=True)

    index = retrieval.Index.build(files, progress)
    if not index.passages:
        return {"error": "the corpus gave no text to index"}
    return retrieval.measure(model, tok, pairs, index, k)


def corpus_sample(paths: list[str], chars: int = SAMPLE_CHARS) -> str:
    from training.data import iter_documents, sniff_text_file
    from training.recipe_load import expand_data
    files = [f for p in paths for f in expand_data(p) if not sniff_text_file(f)]
    parts, n = [], 0
    for _, _, text in iter_documents(files, whole=False):
        parts.append(text[: chars - n])
        n += len(parts[-1])
        if n >= chars:
            break
    return "\n\n".join(parts)


def perplexity(model, tok, text: str) -> float:
    """As training sees a document: BOS where the tokenizer adds one, its end-of-text token after (tokens.doc_affixes)."""
    import torch
    from training.tokens import doc_affixes
    prefix, suffix = doc_affixes(tok)
    ids = (prefix + tok(text, add_special_tokens=False)["input_ids"] + suffix)[: WINDOW * 16]
    nll, count = 0.0, 0
    dev = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(ids) - 1, WINDOW):
            chunk = torch.tensor([ids[i:i + WINDOW]], device=dev)
            if chunk.shape[1] < 2:
                break
            loss = model(input_ids=chunk, labels=chunk).loss.item()
            nll += loss * (chunk.shape[1] - 1)
            count += chunk.shape[1] - 1
    return math.exp(nll / count) if count else float("nan")


def fertility(tok, text: str) -> float:
    words = text.split()
    return len(tok(text, add_special_tokens=False)["input_ids"]) / max(1, len(words))


def split_terms(tok, text: str, top: int = 10) -> list:
    words = {w for w in re.findall(r"[A-Za-z][A-Za-z_\-]{3,}", text)}
    scored = [(w, len(tok(" " + w, add_special_tokens=False)["input_ids"])) for w in words]
    return [list(x) for x in sorted(scored, key=lambda x: (-x[1], x[0]))[:top]]


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="python -m training.plan.probe")
    a.add_argument("--model", required=True)
    a.add_argument("--prompts")
    a.add_argument("--corpus", nargs="*", default=[])
    a.add_argument("--out", required=True)
    a.add_argument("--max-new-tokens", type=int, default=96)
    a.add_argument("--time-limit", type=float, default=30.0)
    a.add_argument("--pairs", help="labeled pairs (.jsonl): with --corpus, measure whether retrieval closes the gap")
    a.add_argument("--passages-k", type=int, default=3)
    args = a.parse_args(argv)
    t0 = time.time()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir = args.model
    if model_dir.startswith("builtin:"):
        from training.demo import resolve_builtin
        model_dir = resolve_builtin(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32,
                                                 device_map={"": 0} if cuda else None)
    model.eval()
    from training.tokens import cut_at_stop, stop_ids
    stops = stop_ids(tok, model.generation_config)  # its EOS list + the template's end-of-turn, never EOS alone
    facts = GapFacts()
    prompts = [p.strip() for p in Path(args.prompts).read_text(encoding="utf-8").splitlines() if p.strip()] \
        if args.prompts else []
    for prompt in prompts[:20]:
        t = time.time()
        enc = tok(prompt, return_tensors="pt").to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=args.max_new_tokens, max_time=args.time_limit,
                                 do_sample=False, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else stops[0])
        new, stopped = cut_at_stop(gen[0, enc["input_ids"].shape[1]:].tolist(), stops)
        dt = time.time() - t
        facts.answers.append({"prompt": prompt, "answer": tok.decode(new, skip_special_tokens=True),
                              "new_tokens": len(new), "seconds": round(dt, 2),
                              "stopped_by": "eos" if stopped else "time" if dt >= args.time_limit else "tokens"})
    reference = REFERENCE.read_text(encoding="utf-8")
    domain = corpus_sample(args.corpus) if args.corpus else ""
    if domain.strip():
        facts.ppl_domain, facts.ppl_reference = perplexity(model, tok, domain), perplexity(model, tok, reference)
        facts.ppl_ratio = facts.ppl_domain / facts.ppl_reference
        facts.fertility_domain, facts.fertility_reference = fertility(tok, domain), fertility(tok, reference)
        facts.fertility_ratio = facts.fertility_domain / facts.fertility_reference
        facts.split_terms = split_terms(tok, domain)
        facts.suggested_gap, facts.summary = suggest(facts.ppl_ratio, facts.fertility_ratio)
    else:
        facts.summary = "no corpus given: only the answers to judge"
    if args.pairs and domain.strip():
        facts.retrieval = retrieval_probe(model, tok, args.corpus, args.pairs, args.passages_k)
    elif args.pairs:
        facts.retrieval = {"error": "no corpus given: nothing to retrieve from"}
    facts.seconds = round(time.time() - t0, 1)
    Path(args.out).write_text(json.dumps(facts.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
