"""MkDocs hook: the tables of setups, agents, networks, gradient methods and env families,
generated from the registries when the site is built.

A page asks for a table with a line `<!-- registry: agents -->` (`setups`, `agents`,
`networks`, `gradients`, `env_families`). Each row comes from the registered entry and the
docstring of the module that defines it, so registering a piece documents it:

- what it is: the docstring's first paragraph, without its leading "`name`:" and without the
  paper's parenthesis;
- paper: the first parenthesis of that paragraph that holds a year ("Perez et al. 2018, eq. 1-2");
- command: the docstring's lines that start with `python train.py`, but those that choose
  another entry of the registry.
"""

from __future__ import annotations

import importlib
import re

from mtsac_jax import registry

REGISTRIES = {
    "setups": registry.SETUPS,
    "agents": registry.AGENTS,
    "networks": registry.NETWORKS,
    "gradients": registry.GRADIENTS,
    "env_families": registry.ENV_FAMILIES,
}
MARKER = re.compile(r"^<!-- registry: (\w+) -->$", re.MULTILINE)
_LEADING_NAMES = re.compile(r"^(`[^`]+`(, | and ))*`[^`]+`: ")
_YEAR = re.compile(r"\b(19|20)\d\d[a-z]?\b")
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z`])")


def parentheses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost parenthesis of `text`, end exclusive."""
    spans, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = index
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, index + 1))
    return spans


def describe(docstring: str) -> tuple[str, str]:
    """(what it is, paper) from a module docstring's first paragraph: its first sentence
    without the paper's parenthesis, and that parenthesis."""
    first = _LEADING_NAMES.sub("", " ".join(docstring.strip().split("\n\n")[0].split()))
    paper = ""
    for start, end in parentheses(first):
        if _YEAR.search(first[start:end]):
            first, paper = first[:start].rstrip() + first[end:], first[start + 1:end - 1]
            break
    sentence = _SENTENCE_END.split(first, maxsplit=1)[0].rstrip(":.")
    return sentence + ".", paper


def commands(docstring: str, others: tuple[str, ...]) -> list[str]:
    """The docstring's `python train.py` lines (their comments dropped), but those that choose
    one of `others` (the registry's other names: a module may define several entries)."""
    lines = [line.split("#")[0].strip() for line in docstring.splitlines() if line.strip().startswith("python train.py")]
    return [line for line in lines
            if not any(re.search(rf"(?<![\w/-]){re.escape(other)}(?![\w.-])", line) for other in others)]


def package_names(kind: str) -> list[str]:
    """The registry's names that the package itself registers."""
    entries = REGISTRIES[kind]
    return [name for name in entries.names() if entries.source(name) is None]


def rows(kind: str) -> list[dict]:
    """One row per entry of the package (not registered by a user's file) in the registry `kind`:
    name, what, paper, commands."""
    entries = REGISTRIES[kind]
    table = []
    for name in package_names(kind):
        docstring = importlib.import_module(entries.module(name)).__doc__ or ""
        what, paper = describe(docstring)
        others = tuple(other for other in entries.names() if other != name)
        row = {"name": name, "what": what, "paper": paper, "commands": commands(docstring, others)}
        if kind == "env_families":
            row["env_names"] = entries.get(name).env_names
        table.append(row)
    return table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(kind: str) -> str:
    """A table of name, (env names,) what it is and paper, then a bash block of each entry's
    commands under a comment naming it (long command lines read badly in a table cell)."""
    header = ["name", *(["env names"] if kind == "env_families" else []), "what it is", "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    block = ["```bash"]
    for row in rows(kind):
        cells = [f"`{row['name']}`"]
        if kind == "env_families":
            cells.append("<br>".join(f"`{env_name}`" for env_name in row["env_names"]))
        cells += [_cell(row["what"]), _cell(row["paper"]) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
        block += [f"# {row['name']}", *row["commands"]]
    return "\n".join([*lines, "", *block, "```"])


def on_page_markdown(markdown: str, page, config, files) -> str:
    def table(match: re.Match) -> str:
        if match.group(1) not in REGISTRIES:
            raise ValueError(f"{page.file.src_path}: unknown registry {match.group(1)!r}; choose from {', '.join(REGISTRIES)}")
        return markdown_table(match.group(1))

    return MARKER.sub(table, markdown)
