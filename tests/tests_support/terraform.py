"""Reading infra/terraform without Terraform: every .tf file parsed by python-hcl2, lookups of
its resources, variables, locals and outputs, and a small reader of the references in its
expressions. The test modules of this package share it; conftest.py gives the `parsed` fixture."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)

# Names Terraform itself binds inside expressions.
BUILTIN_ROOTS = frozenset({"each", "count", "self", "path", "terraform"})

Parsed = dict[str, dict[str, Any]]


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.glob("*.tf"))


def parse() -> Parsed:
    documents = {}
    for path in tf_files():
        with path.open(encoding="utf-8") as handle:
            documents[path.name] = hcl2.load(handle, serialization_options=OPTIONS)
    return documents


def blocks(parsed: Parsed, kind: str) -> Iterator[dict[str, Any]]:
    for document in parsed.values():
        yield from document.get(kind, [])


def unquote(label: str) -> str:
    return label.strip('"')


def resources(parsed: Parsed, kind: str = "resource") -> dict[str, dict[str, Any]]:
    """'type.name' -> body, for resources (or 'data.type.name' for data sources)."""
    found = {}
    for block in blocks(parsed, kind):
        for rtype, named in block.items():
            for name, body in named.items():
                prefix = "data." if kind == "data" else ""
                found[f"{prefix}{unquote(rtype)}.{unquote(name)}"] = body
    return found


def variables(parsed: Parsed) -> dict[str, dict[str, Any]]:
    return {unquote(name): body for block in blocks(parsed, "variable") for name, body in block.items()}


def locals_(parsed: Parsed) -> dict[str, Any]:
    return {name: value for block in blocks(parsed, "locals") for name, value in block.items()}


def outputs(parsed: Parsed) -> dict[str, dict[str, Any]]:
    return {unquote(name): body for block in blocks(parsed, "output") for name, body in block.items()}


# -- a small reader of HCL expressions: the code parts, outside string literals -----------------


def code_of(expression: str) -> str:
    """The code of an interpolated expression, with string literals blanked (their own
    ``${...}`` templates kept), so a literal such as "roles/run.invoker" is not a reference."""
    out: list[str] = []
    stack: list[str] = []  # "code" or "string" for each open level; empty: outside any ${ }
    i = 0
    while i < len(expression):
        char = expression[i]
        if not stack or stack[-1] == "string":
            if expression.startswith("${", i):
                stack.append("code")
                out.append(" ")
                i += 2
                continue
            if char == '"' and stack:
                stack.pop()
        elif char == "}":
            stack.pop()
            out.append(" ")
        else:
            if char == '"':
                stack.append("string")
            elif char == "{":
                stack.append("code")
            out.append(char if char != '"' else " ")
        i += 1
    return "".join(out)


REFERENCE = re.compile(r"(?<![\w.\"-])([a-z_][a-z0-9_]*)((?:\.[a-z_][a-z0-9_-]*)+)")
FOR_BINDING = re.compile(r"\bfor\s+([a-z_]\w*)(?:\s*,\s*([a-z_]\w*))?\s+in\b")


def expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if "${" in value:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expressions(key)
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def dynamic_iterators(value: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "dynamic":
                for block in item if isinstance(item, list) else [item]:
                    names |= {unquote(name) for name in block}
            names |= dynamic_iterators(item)
    elif isinstance(value, list):
        for item in value:
            names |= dynamic_iterators(item)
    return names


def without_former_addresses(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each `moved` block's `from` left out: it names an address that no
    longer exists, on purpose. Its `to` must still resolve."""
    if "moved" not in document:
        return document
    moved = [{key: value for key, value in block.items() if key != "from"} for block in document["moved"]]
    return {**document, "moved": moved}


def references(parsed: Parsed) -> Iterator[tuple[str, str, str]]:
    """(file, reference, expression) for every reference in every expression."""
    for filename, document in parsed.items():
        bound = BUILTIN_ROOTS | dynamic_iterators(document)
        for expression in expressions(without_former_addresses(document)):
            code = code_of(expression)
            local_names = {name for match in FOR_BINDING.finditer(code) for name in match.groups() if name}
            for match in REFERENCE.finditer(code):
                root, rest = match.group(1), match.group(2)
                if root in bound or root in local_names:
                    continue
                yield filename, root + rest, expression
