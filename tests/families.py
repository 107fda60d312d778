"""Tiny random-init models of the families users bring, built locally with their real config classes and
tokenizers that reproduce each family's conventions (BOS, EOS, pad, end-of-turn, chat template). No download.

FAMILIES[name] -> a spec; build(name, folder) writes config.json, weights, tokenizer and generation_config.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("the court held that a statute of limitations runs from the date the claim accrues and the "
         "defendant bears the burden of proof on each element of an affirmative defense while the plaintiff "
         "must show damages caused by the breach of contract under the law of the state where it was signed").split()

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
CHATML_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Mistral v0.1/v0.2: no system role, roles must alternate
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}"
    "{{ m['content'] + eos_token }}{% endif %}{% endfor %}")
# Gemma / Gemma2: "System role not supported"
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for m in messages %}{% if m['role'] == 'assistant' %}{% set role = 'model' %}{% else %}"
    "{% set role = m['role'] %}{% endif %}<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# Gemma3 folds the system message into the first user turn itself
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for m in loop_messages %}{% if m['role'] == 'assistant' %}{% set role = 'model' %}{% else %}"
    "{% set role = m['role'] %}{% endif %}<start_of_turn>{{ role }}\n{{ (first if loop.first else '') + m['content'] | trim }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
PHI3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}")


@dataclass
class Family:
    name: str
    config: str                 # transformers config class
    specials: list[str]
    bos: str | None
    eos: str
    pad: str | None
    add_bos: bool
    template: str | None
    end_of_turn: str            # the token a chat answer ends with
    end_of_text: str            # the token CPT joins documents with
    gen_eos: list[str] = field(default_factory=list)  # generation_config.json's eos_token_id list
    refuses_system: bool = False
    config_kw: dict = field(default_factory=dict)


SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256)

FAMILIES = {f.name: f for f in [
    Family("llama3", "LlamaConfig", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                     "<|end_header_id|>", "<|eot_id|>"],
           "<|begin_of_text|>", "<|eot_id|>", None, True, LLAMA3_TEMPLATE, "<|eot_id|>", "<|end_of_text|>",
           gen_eos=["<|end_of_text|>", "<|eot_id|>"]),
    Family("qwen2", "Qwen2Config", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
           None, "<|im_end|>", "<|endoftext|>", False, CHATML_TEMPLATE, "<|im_end|>", "<|endoftext|>",
           gen_eos=["<|im_end|>", "<|endoftext|>"], config_kw=dict(tie_word_embeddings=True)),
    Family("mistral", "MistralConfig", ["<unk>", "<s>", "</s>"], "<s>", "</s>", None, True, MISTRAL_TEMPLATE,
           "</s>", "</s>", refuses_system=True, config_kw=dict(sliding_window=16)),
    Family("gemma2", "Gemma2Config", ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
           "<bos>", "<eos>", "<pad>", True, GEMMA_TEMPLATE, "<end_of_turn>", "<eos>",
           # as gemma-2-2b (base): its generation config stops on <eos> only, its template ends turns otherwise
           gen_eos=["<eos>"], refuses_system=True, config_kw=dict(head_dim=8, sliding_window=16)),
    Family("gemma3", "Gemma3TextConfig", ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
           "<bos>", "<eos>", "<pad>", True, GEMMA3_TEMPLATE, "<end_of_turn>", "<eos>",
           gen_eos=["<eos>", "<end_of_turn>"], config_kw=dict(head_dim=8, sliding_window=16)),
    Family("gemma3-vl", "Gemma3Config", ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
           "<bos>", "<eos>", "<pad>", True, GEMMA3_TEMPLATE, "<end_of_turn>", "<eos>",
           gen_eos=["<eos>", "<end_of_turn>"], config_kw=dict(head_dim=8, sliding_window=16)),
    Family("phi3", "Phi3Config", ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>",
                                  "<|system|>"],
           "<s>", "<|endoftext|>", "<|endoftext|>", False, PHI3_TEMPLATE, "<|end|>", "<|endoftext|>",
           gen_eos=["<|endoftext|>", "<|end|>"]),
    Family("base", "LlamaConfig", ["<unk>", "<s>", "</s>"], "<s>", "</s>", None, True, None, "</s>", "</s>"),
]}


def build_tokenizer(f: Family, folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=f.specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], trainer)
    if f.add_bos:
        tk.post_processor = processors.TemplateProcessing(single=f"{f.bos} $A", pair=f"{f.bos} $A {f.bos} $B",
                                                          special_tokens=[(f.bos, tk.token_to_id(f.bos))])
    kw = {k: v for k, v in dict(bos_token=f.bos, eos_token=f.eos, pad_token=f.pad,
                                unk_token="<unk>" if "<unk>" in f.specials else None).items() if v}
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **kw)
    if f.template:
        tok.chat_template = f.template
    tok.save_pretrained(str(folder))
    return tok


def build(name: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random-init model of family `name` with its tokenizer into `folder`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    f = FAMILIES[name]
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(f, folder)
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.convert_tokens_to_ids(f.eos),
               pad_token_id=tok.pad_token_id)
    cls = getattr(transformers, f.config)
    if f.config == "Gemma3Config":
        cfg = cls(text_config=dict(SMALL, **f.config_kw, **ids),
                  vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=28, patch_size=14), mm_tokens_per_image=4)
    else:
        cfg = cls(**SMALL, **f.config_kw, **ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(folder))
    if f.gen_eos:
        GenerationConfig(bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=[tok.convert_tokens_to_ids(t) for t in f.gen_eos]).save_pretrained(str(folder))
    return folder
