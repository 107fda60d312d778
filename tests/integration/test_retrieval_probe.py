"""Does retrieval close the gap (training/plan/retrieval.py)? Measured on a tiny model trained here, for a few
hundred steps, on the probe's own prompt format: where the answers are verbatim in the corpus, retrieval must
close most of the gap; where they are absent, little of it. And `plan --json --probe` on the demo carries
facts.probe.retrieval with finite numbers."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from training.plan import retrieval
from training.plan.decide import RETRIEVAL_CLOSES, Facts, decide
from training.plan.scan import CorpusFacts
from training.plan.pairs_scan import PairsFacts
from training.plan.shapes import resolve_shape

ROOT = Path(__file__).resolve().parents[2]
SYL = ["ka", "zu", "mo", "ri", "te", "la", "vo", "ne", "shi", "po", "da", "gu", "fe", "xi", "bo", "ya"]


def doc(x: str, y: str) -> str:
    return f"The capital of {x} is {y} ."


def question(x: str) -> str:
    return f"What is the capital of {x} ?"


@pytest.fixture(scope="module")
def world():
    """Made-up countries and capitals (one word-level token each), a tiny Llama trained to answer from a
    context when one is given: the base model of this test, which cannot know the held-out facts."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rnd = random.Random(0)
    torch.manual_seed(0)
    pool = sorted({"".join(rnd.choice(SYL) for _ in range(3)).capitalize() for _ in range(400)})
    u = rnd.sample(pool, 240)
    known, absent = list(zip(u[:60], u[120:180])), list(zip(u[60:120], u[180:240]))
    train = list(zip(rnd.sample(pool, len(pool)), rnd.sample(pool, len(pool))))
    words = set("Context: Question: Answer: What is the capital of ? .".split()) | set(pool)
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=256))

    def sample() -> str:  # the probe's format: the fact's document, the bare answer, or no context
        x, y = rnd.choice(train)
        r = rnd.random()
        ctx = [doc(x, y)] if r < 0.5 else [y] if r < 0.75 else []
        return retrieval.prompt_text(question(x), ctx) + " " + y

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.set_num_threads(1)
    for _ in range(400):
        batch = [tok(sample())["input_ids"] for _ in range(32)]
        n = max(map(len, batch))
        ids = torch.tensor([b + [0] * (n - len(b)) for b in batch])
        labels = ids.masked_fill(ids == 0, -100)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model, tok, known, absent


def probe(tmp_path, model, tok, corpus_facts, asked) -> dict:
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"text": doc(x, y)}) for x, y in corpus_facts))
    index = retrieval.Index.build([tmp_path / "corpus.jsonl"])
    return retrieval.measure(model, tok, [(question(x), y) for x, y in asked[:24]], index, k=1)


def decided(r: dict):
    return decide(Facts(model="m", shape=resolve_shape(None, 8e9), corpus=CorpusFacts.from_declared(2e9),
                        pairs=PairsFacts.from_declared(2000), gap="knowledge", probe={"retrieval": r}))


def test_retrieval_closes_the_gap_when_the_answers_are_in_the_corpus(tmp_path, world):
    model, tok, known, _ = world
    r = probe(tmp_path, model, tok, known, known)
    assert r["answers_found"] == r["pairs_scored"] == 24
    assert r["gap_measurable"] and r["answer_loss_with_retrieval"] < r["answer_loss_base"]
    assert r["gap_closed"] > RETRIEVAL_CLOSES, r
    assert len(r["examples"]) == 3 and r["examples"][0]["answer_in_passages"]
    assert decided(r).path == "sft"  # RAG + SFT for format, not CPT


def test_retrieval_cannot_close_the_gap_when_the_answers_are_absent(tmp_path, world):
    model, tok, known, absent = world
    r = probe(tmp_path, model, tok, known, absent)  # the corpus holds other countries' capitals
    assert r["answers_found"] == 0 and r["gap_measurable"]
    assert r["gap_closed"] < 0.4, r
    assert decided(r).path == "cpt_sft"  # CPT is justified


def test_plan_probe_on_the_demo_carries_retrieval_with_finite_numbers():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "tui.cli", "plan", "--json", "--probe", "--model", "builtin:tiny-llama",
                        "--corpus", "builtin:demo-corpus", "--pairs", "builtin:demo-pairs"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)["facts"]["probe"]["retrieval"]
    for key in ("answer_loss_base", "answer_loss_with_retrieval", "gap_closed"):
        assert math.isfinite(r[key]), (key, r)
    assert 0 <= r["gap_closed"] <= 1 and r["passages_k"] == 3 and r["pairs_scored"] > 0
    assert r["examples"] and {"question", "answer", "top_passage", "loss_base"} <= set(r["examples"][0])
