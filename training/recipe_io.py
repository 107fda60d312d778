"""Recipe text handling: YAML read with the line of every key, `--set` overrides, and the problem type.

Separate from the schema (recipe.py) so each stays readable; recipe.py re-exports what callers use.
Recipes are data: only plain YAML mappings, lists and scalars are accepted (no tags that build objects).
"""
from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel


class Problem(BaseModel):
    path: str
    message: str
    line: int | None = None

    def render(self, file: str | None) -> str:
        where = f"{file}:{self.line}: " if (file and self.line) else (f"{file}: " if file else "")
        return f"{where}{self.path or '(recipe)'}: {self.message}"


class RecipeError(Exception):
    """Every problem found in a recipe, ready to print one per line."""

    def __init__(self, problems: list[Problem], file: str | None = None):
        self.problems = problems
        self.file = file
        super().__init__("\n".join(p.render(file) for p in problems))

    def lines(self) -> list[str]:
        return [p.render(self.file) for p in self.problems]


# ---------------------------------------------------------------- YAML with line numbers

def _node_to_data(node: yaml.Node, lines: dict[tuple, int], path: tuple) -> Any:
    """Build plain data from a composed YAML node, remembering the line of every key path."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
        # e.g. !!python/object/apply: a recipe is data, so no tag may make it build objects
        raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag} is not allowed", node.start_mark)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = _scalar(k)
            lines[path + (key,)] = k.start_mark.line + 1
            out[key] = _node_to_data(v, lines, path + (key,))
            lines[path + (key,)] = k.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_data(v, lines, path + (i,)) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        msg = " ".join(str(getattr(e, "problem", None) or e).split())
        raise RecipeError([Problem(path="", line=(mark.line + 1) if mark else None,
                                   message=f"not valid YAML ({msg}); fix the syntax at that line")], file)
    if node is None:
        return None, {}
    lines: dict[tuple, int] = {}
    try:
        return _node_to_data(node, lines, ()), lines
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise RecipeError([Problem(path="", line=(mark.line + 1) if mark else None,
                                   message=f"YAML value not allowed in a recipe ({getattr(e, 'problem', e)})")], file)


# ---------------------------------------------------------------- overrides

def apply_override(data: dict, expr: str) -> None:
    """`key.path=value`; value parsed as YAML; a list index or a stage name/type may address a stage."""
    if "=" not in expr:
        raise RecipeError([Problem(path=expr, message="--set needs key.path=value, e.g. --set stages.0.max_steps=10")])
    key, raw = expr.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads 3e-5 (no dot) as a string; a person means a number
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError([Problem(path=expr, message="--set needs a key path before '='")])
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            idx = _stage_index(cur, part)
            if idx is None:
                raise RecipeError([Problem(path=key, message=f"--set: no list item '{part}' (use an index or a stage name)")])
            if last:
                cur[idx] = value
            else:
                cur = cur[idx]
        elif isinstance(cur, dict):
            if last:
                cur[part] = value
            else:
                cur = cur.setdefault(part, {})
        else:
            raise RecipeError([Problem(path=key, message=f"--set: '{'.'.join(parts[:i])}' is not a section")])


def _stage_index(items: list, part: str) -> int | None:
    if part.lstrip("-").isdigit():
        i = int(part)
        return i if -len(items) <= i < len(items) else None
    for i, it in enumerate(items):
        if isinstance(it, dict) and (it.get("name") == part or (it.get("name") is None and it.get("type") == part)):
            return i
    return None
