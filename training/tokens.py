"""The tokenizer's own conventions in one place: what goes around each document when CPT joins documents into
packed blocks (and when perplexity is measured), and which tokens end an answer, so training, evaluation,
the probe and the exported model agree.

- BOS: added before each document when the tokenizer itself adds one to plain text (Llama-3, Gemma, Mistral);
  never when it does not (Qwen2, Phi3).
- End of document: the tokenizer's end-of-text token. An instruct tokenizer whose EOS is an end-of-turn token
  (`<|im_end|>` on Qwen-Instruct, `<|eot_id|>` on Llama-3-Instruct, `<end_of_turn>`, Phi3's `<|end|>`) still
  joins documents with its end-of-text token (`<|endoftext|>`, `<|end_of_text|>`, `<eos>`, `</s>`).
- Stopping: the generation config's EOS list, the tokenizer's EOS and the chat template's end-of-turn token.
"""
from __future__ import annotations

# tokens that close a chat turn in the families users bring
END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endofturn|>")
# tokens that close a document, in order of preference
END_OF_TEXT = ("<|end_of_text|>", "<|endoftext|>", "<eos>", "</s>", "<|eos|>")


def _id(tok, token: str) -> int | None:
    """The id of `token` when it is one token of this vocabulary (not the unknown token)."""
    if not token:
        return None
    vocab = tok.get_vocab()
    return vocab.get(token)


def adds_bos(tok) -> bool:
    """Whether the tokenizer puts BOS before plain text by itself (its post-processor / add_bos_token)."""
    bos = tok.bos_token_id
    if bos is None:
        return False
    with_special = tok("x", add_special_tokens=True)["input_ids"]
    without = tok("x", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[0] == bos and (not without or without[0] != bos)


def end_of_text_id(tok) -> int:
    """The token that ends a document: EOS, unless EOS is an end-of-turn token and an end-of-text token exists."""
    if tok.eos_token in END_OF_TURN:
        for t in END_OF_TEXT:
            if (i := _id(tok, t)) is not None:
                return i
    return tok.eos_token_id


def doc_affixes(tok) -> tuple[list[int], list[int]]:
    """(token ids put before each document, token ids put after its end)."""
    prefix = [tok.bos_token_id] if adds_bos(tok) else []
    return prefix, [end_of_text_id(tok)]


def end_of_turn_ids(tok, template: str | None = None) -> list[int]:
    """The end-of-turn tokens the chat template writes after a turn (none for a template that ends turns
    with EOS)."""
    template = template if template is not None else (tok.chat_template or "")
    if not isinstance(template, str):
        return []
    return [i for t in END_OF_TURN if t in template and (i := _id(tok, t)) is not None]


def stop_ids(tok, generation_config=None) -> list[int]:
    """Every token that ends an answer: the generation config's EOS (one id or a list), the tokenizer's EOS,
    the chat template's end-of-turn."""
    ids: list[int] = []
    gen = getattr(generation_config, "eos_token_id", None)
    for i in ([gen] if isinstance(gen, int) else list(gen or [])) + [tok.eos_token_id] + end_of_turn_ids(tok):
        if i is not None and i not in ids:
            ids.append(int(i))
    return ids


def cut_at_stop(ids: list[int], stops: list[int]) -> tuple[list[int], bool]:
    """The generated ids up to (not including) the first stop token; whether one was found."""
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k], True
    return ids, False


def chat_ids(tok, messages: list[dict], generation_prompt: bool) -> list[int]:
    """The chat template's token ids, as TRL's SFTTrainer tokenizes a conversation."""
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True)
    return list(out["input_ids"])


def sft_example(tok, row: dict, max_len: int, completion_only: bool = True) -> tuple[list[int], list[bool]]:
    """(input ids, which positions are trained) for one prompt/completion pair, the way the sft stage masks it
    (TRL: the completion starts where the tokenized prompt and prompt+completion diverge, truncated to max_len)."""
    prompt = chat_ids(tok, row["prompt"], True)
    full = chat_ids(tok, row["prompt"] + row["completion"], False)
    k = 0
    while k < min(len(prompt), len(full)) and prompt[k] == full[k]:
        k += 1
    trained = [not completion_only or i >= k for i in range(len(full))]
    return full[:max_len], trained[:max_len]


def fold_system(messages: list[dict]) -> list[dict]:
    """The system text put in front of the first user turn (for templates that refuse a system role)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}" if system else m["content"]
            break
    return rest


def fit_to_template(tok, rows: list[dict], lines: list[int] | None = None, source: str = "pairs") -> tuple[list[dict], int]:
    """Every pair rendered through the chat template once, before training. A template that refuses a system
    message (Mistral v0.1/0.2, Gemma: "System role not supported", "roles must alternate") gets the system text
    folded into the first user turn instead; (rows, how many were folded). Any other refusal is a DataError
    naming the line."""
    from training.data import DataError
    out, folded = [], 0
    for i, r in enumerate(rows):
        try:
            tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
            out.append(r)
            continue
        except Exception as e:  # noqa: BLE001 - jinja's TemplateError and the template's raise_exception
            first = e
        where = f"{source}:{lines[i]}" if lines and i < len(lines) else f"{source} (pair {i + 1})"
        if any(m["role"] == "system" for m in r["prompt"]):
            r2 = {"prompt": fold_system(r["prompt"]), "completion": r["completion"]}
            try:
                tok.apply_chat_template(r2["prompt"] + r2["completion"], tokenize=False)
                out.append(r2)
                folded += 1
                continue
            except Exception as e:  # noqa: BLE001
                first = e
        raise DataError(f"{where}: the model's chat template refuses this pair "
                        f"({' '.join(str(first).split())[:160]}); fix the row or give chat_template: plain")
    return out, folded
