"""Does retrieval close the gap? The guide: "choose continued pre-training if your base model has no grounding
in your domain and retrieval alone won't bridge the gap"; FAQ: "skip CPT and use RAG if your domain facts are
retrievable at inference time". This measures it instead of asking the user's eye.

  index      the corpus, split into passages of about PASSAGE_WORDS words, indexed by BM25 (the bm25s library:
             chosen over rank-bm25 by bench/retrieval_bench.py, see bench/RESULTS.md), tokenized in batches as
             the documents stream in, with progress; at most MAX_INDEX_BYTES of text (stated in the result)
  pairs      a sample of the labeled pairs chosen by content hash (stable across runs), at most MAX_PAIRS:
             question = the prompt's text, reference answer = the completion
  losses     the base model's mean loss per answer token (nats) on the reference answer, teacher-forced, with
               base         the question alone                      "Question: ...\nAnswer: ..."
               retrieval    the top-k passages BM25 finds for it    "Context:\n<passages>\n\nQuestion: ..."
               oracle       the reference answer itself as context  (the floor any retrieval could reach)
  gap_closed (base - retrieval) / (base - oracle), clipped to 0..1: the share of the gap retrieval closes.
             When base - oracle (gap_nats) is under decide.MIN_GAP_NATS the model already predicts the answers
             (or cannot read a context at all): gap_measurable is false and the decision does not use it.

Runs inside the probe's subprocess (training/plan/probe.py): torch is imported by the caller.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

PASSAGE_WORDS = 120
MAX_INDEX_BYTES = 500_000_000  # a probe, not a production index: the first 500 MB of text
MAX_PAIRS = 24
PASSAGES_K = 3
MAX_CONTEXT_TOKENS = 768       # retrieved text in the prompt, all passages together
MAX_ANSWER_TOKENS = 128
BATCH = 2000                   # passages tokenized per batch while the index streams in
EXAMPLES = 3


def split_passages(text: str, words: int = PASSAGE_WORDS):
    """Passages of about `words` words, cut at line ends where possible (lines longer than that are cut
    at word boundaries)."""
    buf: list[str] = []
    n = 0
    for line in text.splitlines():
        w = line.split()
        while len(w) > words:
            if buf:
                yield "\n".join(buf)
                buf, n = [], 0
            yield " ".join(w[:words])
            w = w[words:]
        if not w:
            continue
        if n + len(w) > words and buf:
            yield "\n".join(buf)
            buf, n = [], 0
        buf.append(" ".join(w))
        n += len(w)
    if buf:
        yield "\n".join(buf)


class Index:
    """BM25 over passages; build() streams documents, search() returns the top-k passages."""

    def __init__(self):
        self.passages: list[str] = []
        self.bytes = 0
        self.truncated = False
        self.seconds = 0.0
        self._bm25 = None
        self._tok = None

    @classmethod
    def build(cls, files: list[Path], progress=None, max_bytes: int = MAX_INDEX_BYTES) -> "Index":
        """progress(done_bytes, total_bytes) after each batch."""
        import bm25s
        from bm25s.tokenization import Tokenized, Tokenizer
        from training.data import iter_documents
        t0 = time.time()
        self = cls()
        total = sum(f.stat().st_size for f in files)
        self._tok = Tokenizer(stopwords="en")
        ids: list[list[int]] = []
        batch: list[str] = []

        def flush():
            if batch:
                ids.extend(self._tok.tokenize(batch, update_vocab=True, return_as="ids", show_progress=False))
                self.passages.extend(batch)
                batch.clear()
                if progress:
                    progress(min(self.bytes, total), total)

        for _, _, text in iter_documents(files, whole=False):
            if self.bytes >= max_bytes:
                self.truncated = True
                break
            self.bytes += len(text.encode("utf-8", "ignore"))
            for p in split_passages(text):
                batch.append(p)
                if len(batch) >= BATCH:
                    flush()
        flush()
        if self.passages:
            self._bm25 = bm25s.BM25()
            self._bm25.index(Tokenized(ids=ids, vocab=self._tok.get_vocab_dict()), show_progress=False)
        self.seconds = time.time() - t0
        return self

    def search(self, query: str, k: int) -> list[str]:
        if self._bm25 is None:
            return []
        q = self._tok.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)
        if not q or not q[0]:
            return []  # no word of the query is in the corpus: nothing to retrieve
        k = min(k, len(self.passages))
        docs, scores = self._bm25.retrieve([q[0]], k=k, show_progress=False, return_as="tuple")
        return [self.passages[int(i)] for i, s in zip(docs[0], scores[0]) if s > 0]


def pair_text(row: dict) -> tuple[str, str]:
    """(question, reference answer) of a normalised pair (training/pairs.py: prompt/completion messages)."""
    q = "\n".join(m["content"] for m in row["prompt"] if m["role"] != "system")
    return q.strip(), row["completion"][-1]["content"].strip()


def sample_pairs(rows: list[dict], n: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """Up to n pairs chosen by content hash: the same pairs every run, spread over the file."""
    from training.data import doc_hash
    qa = [pair_text(r) for r in rows]
    qa = [x for x in qa if x[0] and x[1]]
    return sorted(qa, key=lambda x: doc_hash(x[0] + "\n" + x[1]))[:n]


def prompt_text(question: str, passages: list[str]) -> str:
    ctx = "Context:\n" + "\n\n".join(passages) + "\n\n" if passages else ""
    return f"{ctx}Question: {question}\nAnswer:"


def fit_passages(tok, passages: list[str], budget: int = MAX_CONTEXT_TOKENS) -> list[str]:
    """Each passage cut to an equal share of the context budget (in tokens), at a word boundary."""
    if not passages:
        return []
    share = max(16, budget // len(passages))
    out = []
    for p in passages:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        if len(ids) > share:
            cut = tok.decode(ids[:share])
            p = cut.rsplit(" ", 1)[0] if " " in cut else cut
        out.append(p)
    return out


def answer_loss(model, tok, prompt: str, answer: str) -> float:
    """Mean loss per answer token (nats), the answer teacher-forced after the prompt."""
    import torch
    p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    a_ids = tok(" " + answer, add_special_tokens=False)["input_ids"][:MAX_ANSWER_TOKENS]
    max_len = getattr(model.config, "max_position_embeddings", 2048) or 2048
    keep = max(1, min(max_len, 4096) - len(a_ids))
    p_ids = p_ids[-keep:]  # an over-long prompt loses its head; the question and answer stay
    ids = torch.tensor([p_ids + a_ids], device=next(model.parameters()).device)
    labels = ids.clone()
    labels[0, : len(p_ids)] = -100
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss.item())


def measure(model, tok, pairs: list[tuple[str, str]], index: Index, k: int = PASSAGES_K,
            examples: int = EXAMPLES) -> dict:
    """The three losses averaged over the pairs, gap_closed and a few side-by-side examples."""
    from training.plan.decide import MIN_GAP_NATS
    t0 = time.time()
    rows = []
    for q, a in pairs:
        found = fit_passages(tok, index.search(q, k))
        rows.append({"question": q, "answer": a, "hit": any(a in p for p in found),
                     "top_passage": found[0] if found else "",
                     "loss_base": answer_loss(model, tok, prompt_text(q, []), a),
                     "loss_with_retrieval": answer_loss(model, tok, prompt_text(q, found), a),
                     "loss_oracle": answer_loss(model, tok, prompt_text(q, [a]), a)})
    if not rows:
        return {"error": "no pairs to score"}
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    base, rag, oracle = mean("loss_base"), mean("loss_with_retrieval"), mean("loss_oracle")
    gap = base - oracle
    closed = min(1.0, max(0.0, (base - rag) / gap)) if gap > 1e-9 else 0.0
    # side by side: where retrieval helped most, and where it helped least
    by_gain = sorted(rows, key=lambda r: r["loss_base"] - r["loss_with_retrieval"], reverse=True)
    picked = by_gain[: max(1, examples - 1)] + ([by_gain[-1]] if len(by_gain) >= examples else [])
    ex = [{"question": r["question"][:300], "answer": r["answer"][:300], "top_passage": r["top_passage"][:300],
           "answer_in_passages": r["hit"], "loss_base": round(r["loss_base"], 4),
           "loss_with_retrieval": round(r["loss_with_retrieval"], 4), "loss_oracle": round(r["loss_oracle"], 4)}
          for r in picked]
    finite = all(math.isfinite(x) for x in (base, rag, oracle))
    return {"answer_loss_base": round(base, 4), "answer_loss_with_retrieval": round(rag, 4),
            "answer_loss_oracle": round(oracle, 4), "gap_nats": round(gap, 4), "gap_closed": round(closed, 4),
            "gap_measurable": bool(finite and gap >= MIN_GAP_NATS), "passages_k": k,
            "pairs_scored": len(rows), "answers_found": sum(r["hit"] for r in rows), "retriever": "BM25 (bm25s)",
            "index_passages": len(index.passages), "index_mb": round(index.bytes / 1e6, 2),
            "index_truncated": index.truncated, "index_seconds": round(index.seconds, 2),
            "score_seconds": round(time.time() - t0, 2), "examples": ex}


def decision_value(r: dict | None) -> float | None:
    """gap_closed when the decision may use it (measured, and there was a gap to close), else None."""
    if not r or r.get("error") or not r.get("gap_measurable"):
        return None
    return r.get("gap_closed")
