"""The built-in demo: real text, a tokenizer trained on it, a tiny random-init Llama, instruction pairs.

No download. The text is the documentation that ships with Python itself: the docstrings of a fixed
list of standard-library modules (real English technical prose with a domain vocabulary). The pairs
are derived from the same documentation: "What does `json.dumps` do?" -> the first paragraph of its
docstring, and "What is the signature of ...?" -> its signature.

Assets are built once into $TUNE_WIZARD_HOME/demo-v2 (default ~/.cache/tune-wizard/demo-v2),
atomically (a temporary folder renamed into place), so concurrent runs never see half a build.
Recipes name them `builtin:tiny-llama`, `builtin:demo-corpus` and `builtin:demo-pairs`.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from pathlib import Path

ASSET_VERSION = "demo-v2"  # v2: the same on every build (v1 held memory addresses)
MODULES = [
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "bz2", "calendar", "cmath", "codecs",
    "collections", "colorsys", "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "dis", "doctest", "email", "enum", "filecmp", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "http.client",
    "imaplib", "importlib", "inspect", "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale",
    "logging", "lzma", "mailbox", "math", "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pkgutil", "platform", "plistlib", "pprint", "queue", "quopri", "random", "re", "reprlib", "sched", "secrets",
    "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "sqlite3", "statistics", "string",
    "struct", "subprocess", "sysconfig", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize",
    "traceback", "types", "typing", "unicodedata", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
    "wave", "weakref", "xml.etree.ElementTree", "zipfile", "zlib",
]
SPECIALS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
# a chat template that keeps prompt-with-generation-prompt a prefix of prompt+completion (TRL needs that)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MODEL_SHAPE = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
                   rope_theta=10000.0)
VOCAB = 4096


def home() -> Path:
    return Path(os.environ.get("TUNE_WIZARD_HOME", Path.home() / ".cache" / "tune-wizard"))


def asset_dir() -> Path:
    return home() / ASSET_VERSION


def _public_objects(mod):
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    for name in sorted(set(names)):
        try:
            obj = getattr(mod, name)
        except Exception:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", "") and not str(obj.__module__).startswith(mod.__name__.split(".")[0]):
            continue  # re-exported from elsewhere
        doc = inspect.getdoc(obj)
        if doc and len(doc) > 40:
            yield name, obj, doc


def _signature(obj) -> str | None:
    """The signature as text, without the memory addresses some defaults print (`<object object at 0x7f..>`):
    they made every build's corpus, and so its tokenizer, differ from the last."""
    try:
        return re.sub(r" at 0x[0-9a-fA-F]+", "", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return None


def build_documents() -> tuple[list[str], list[dict]]:
    """(documents, pairs) from the standard library's own documentation."""
    docs, pairs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for modname in MODULES:
            try:
                mod = importlib.import_module(modname)
            except Exception:
                continue
            mdoc = inspect.getdoc(mod)
            if mdoc:
                docs.append(f"Module {modname}\n\n{mdoc}\n")
            for name, obj, doc in _public_objects(mod):
                qual = f"{modname}.{name}"
                sig = _signature(obj)
                head = f"{qual}{sig or ''}"
                docs.append(f"{head}\n\n{doc}\n")
                first = doc.split("\n\n")[0].strip()
                if sig and first.startswith(name + "("):  # builtins repeat the signature as a first line
                    first = doc.split("\n\n")[1].strip() if "\n\n" in doc else first
                if 20 <= len(first) <= 400:
                    kind = "class" if inspect.isclass(obj) else "function"
                    pairs.append({"messages": [
                        {"role": "user", "content": f"What does the {kind} `{qual}` do?"},
                        {"role": "assistant", "content": " ".join(first.split())}]})
                if sig and len(sig) <= 160 and not inspect.isclass(obj):
                    pairs.append({"prompt": f"Give the signature of `{qual}`.",
                                  "completion": f"`{qual}{sig}`"})
    return docs, pairs


def _train_tokenizer(docs: list[str], out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                   pad_token="<|pad|>", model_max_length=MODEL_SHAPE["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def _build_model(tok, out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **MODEL_SHAPE)
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def build_assets(dest: Path) -> None:
    docs, pairs = build_documents()
    random.Random(0).shuffle(pairs)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=dest.parent))
    try:
        (tmp / "corpus").mkdir()
        # one .jsonl corpus of documents plus a .md file: both formats the tool reads
        with open(tmp / "corpus" / "stdlib-docs.jsonl", "w", encoding="utf-8") as f:
            for d in docs[: len(docs) * 9 // 10]:
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        (tmp / "corpus" / "stdlib-docs-tail.md").write_text("\n\n".join(docs[len(docs) * 9 // 10:]), encoding="utf-8")
        with open(tmp / "pairs.jsonl", "w", encoding="utf-8") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        tok = _train_tokenizer(docs, tmp / "tokenizer")
        _build_model(tok, tmp / "tiny-llama")
        (tmp / "MANIFEST.json").write_text(json.dumps({"version": ASSET_VERSION, "documents": len(docs),
                                                       "pairs": len(pairs), "modules": MODULES}, indent=1))
        try:
            os.rename(tmp, dest)
        except OSError:  # someone else finished first
            if not (dest / "MANIFEST.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_assets() -> Path:
    """Build the assets on first use, in a fresh interpreter: what a module exposes (and so which
    docstrings become documents and pairs) depends on what else the calling process has imported."""
    d = asset_dir()
    if not (d / "MANIFEST.json").exists():
        import subprocess
        import sys
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=root + (os.pathsep + os.environ["PYTHONPATH"]
                                                  if os.environ.get("PYTHONPATH") else ""))
        res = subprocess.run([sys.executable, "-m", "training.demo"], env=env, capture_output=True, text=True)
        if res.returncode != 0 or not (d / "MANIFEST.json").exists():
            raise RuntimeError(f"building the demo assets in {d} failed: {res.stderr.strip()[-500:]}")
    return d


def resolve_builtin(spec: str) -> str:
    """builtin:NAME -> a real local path (building the assets on first use)."""
    name = spec.split(":", 1)[1]
    d = ensure_assets()
    return str({"tiny-llama": d / "tiny-llama", "demo-corpus": d / "corpus", "demo-pairs": d / "pairs.jsonl"}[name])


if __name__ == "__main__":
    if not (asset_dir() / "MANIFEST.json").exists():
        build_assets(asset_dir())
    print(asset_dir())
