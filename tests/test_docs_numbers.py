"""Every table of measured figures in the documentation names its source, and agrees with it.

A table is a block of lines starting with "|" (header, separator, body rows). Right before it
(blank lines aside) an HTML comment, invisible on the rendered page, says where its figures
come from, in fields separated by ";":

    <!-- source: bench/results/a.json[, bench/results/b.json]
         [; rows: <pattern>] [; columns: 2, 4-6]
         [; derived: <expression>]... [; values: <expression>]... -->

or, for a table with no measured figure in it (published figures, config keys):

    <!-- not measured: <why> -->

In docs/results.md and docs/performance.md every table needs one of the two; in README.md and
the other pages of docs/, a table with a `source:` comment is checked. (A comment that starts
with neither word is not a source comment.)

Which numbers: every number in the body rows' cells of the checked columns (`columns:`, 1-based;
by default every column but the first, which names the row). A number is a run of digits, with
thousands commas ("1,044") and a decimal part, and a sign where the sign stands apart ("-0.02",
"[+0.07"); a hyphen between two numbers is a range ("8.06-9.73": two numbers). Digits inside
`code`, or glued to a letter or a dimension ("MT10", "v3", "3x400", "2M", "50k"), are not
numbers; a ratio's trailing "x" ("1.06x") is allowed.

What they must equal: a number shown with d decimals matches a value v when v, formatted with d
decimals, reads as that number (f"{v:.{d}f}"); a number followed by "%" also matches 100 * v.
The values are every numeric leaf of the source files, plus the values of each `derived:`
expression; with `values:` fields, exactly the values of their expressions instead.

Expressions: arithmetic (numbers, + - * / **, parentheses) over {path} references into the
sources. A path is a leaf's keys joined by ".", list indices as "[i]"
({systems.sbx.updates_per_s.median}, {ops[3].ms}); "*" stands for any one key (the shortest
that fits, since a key may hold a ".") and "[*]" for any index. The k-th "*" of every
reference in one expression binds the same key or index within one file, so
{ops[*].gflop} / {ops[*].ms} divides each op's own two figures and {rows[*].rate} /
{rows[0].rate} divides every row's rate by the first one's.

Rows: with `rows: <pattern>` (a path with "*", e.g. `systems.*`), every match of the pattern in a
source is one record, and each body row is checked against one record alone: the one holding
the most of the row's numbers (a leaf's record is the match its path starts with; a computed
value's, the record of its expression's first reference; a computed value outside every record
serves every row, a leaf outside every record none). A changed digit then has to match
another value of its own record to go unnoticed. In any case the numbers of one row must be
different values: each value serves one number of the row at most.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import functools
import itertools
import json
import math
import operator
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
STRICT = ("docs/results.md", "docs/performance.md")  # every table needs a source or `not measured`
PAGES = (*STRICT, "README.md", *sorted(
    str(path.relative_to(REPO)) for path in (REPO / "docs").glob("*.md")
    if str(path.relative_to(REPO)) not in STRICT))
FIELDS = ("source", "rows", "columns", "derived", "values", "not measured")


@dataclasses.dataclass
class Table:
    page: str
    line: int  # 1-based line of the header
    comment: dict | None  # field -> its values, in order
    rows: list[list[str]]  # the body rows' cells

    def __str__(self):
        return f"{self.page}:{self.line}"


def parse_comment(text: str) -> dict:
    fields: dict[str, list[str]] = {}
    for part in text.split(";"):
        part = " ".join(part.split())
        if not part:
            continue
        name, colon, value = part.partition(":")
        if not colon or name.strip() not in FIELDS:
            raise ValueError(f"unknown field {part!r} (fields: {', '.join(FIELDS)})")
        fields.setdefault(name.strip(), []).append(value.strip())
    return fields


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(page: str, text: str) -> list[Table]:
    lines = text.split("\n")
    found, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        comment, j = None, start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j].rstrip().endswith("-->"):
            k = j
            while k >= 0 and "<!--" not in lines[k]:
                k -= 1
            body = "\n".join(lines[k:j + 1])
            body = body[body.index("<!--") + 4:body.rindex("-->")]
            if body.lstrip().startswith(("source:", "not measured:")):  # not some other comment
                try:
                    comment = parse_comment(body)
                except ValueError as error:
                    comment = {"error": [str(error)]}
        found.append(Table(page, start + 1, comment, [cells(line) for line in lines[start + 2:i]]))
    return found


NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")


@dataclasses.dataclass(frozen=True)
class Number:
    text: str
    value: float
    decimals: int
    percent: bool


def numbers(cell: str) -> list[Number]:
    """The numbers of one cell, by the rule in the module docstring."""
    text = re.sub(r"`[^`]*`", " ", cell).replace("*", "")
    found = []
    for match in NUMBER.finditer(text):
        a, b = match.span()
        before = text[a - 1] if a else " "
        after = text[b] if b < len(text) else " "
        if before.isalnum() or before in "_.":
            continue  # MT10, v3, 3x400's 400
        if after == "x":
            if b + 1 < len(text) and (text[b + 1].isalnum() or text[b + 1] == "_"):
                continue  # 3x400
        elif after.isalnum() or after == "_":
            continue  # 2M, 50k, 3e-4
        signed = before in "+-" and (a < 2 or text[a - 2] in " [(/")
        whole, fraction = match.group(1), match.group(2) or ""
        found.append(Number(
            text=(before if signed else "") + match.group(0),
            value=(-1 if signed and before == "-" else 1) * float(whole.replace(",", "") + fraction),
            decimals=max(len(fraction) - 1, 0),
            percent=text[b:].lstrip().startswith("%"),
        ))
    return found


def flatten(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        yield path, float(value)


@functools.cache
def leaves(source: str) -> tuple[tuple[str, float], ...]:
    return tuple(flatten(json.loads((REPO / source).read_text())))


def path_regex(pattern: str) -> str:
    return re.escape(pattern).replace(r"\[\*\]", r"\[(\d+)\]").replace(r"\*", r"([^\[\]]+?)")


REFERENCE = re.compile(r"\{([^{}]+)\}")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.Div: operator.truediv, ast.Pow: operator.pow}


def evaluate(node, names):
    if isinstance(node, ast.Expression):
        return evaluate(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.left, names), evaluate(node.right, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = evaluate(node.operand, names)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"not allowed in an expression: {ast.dump(node)}")


def expression_values(expression: str, sources: list[str]) -> list[tuple[float, str, str]]:
    """(value, source, path of its first reference) for every consistent binding (module docstring)."""
    patterns = REFERENCE.findall(expression)
    tree = ast.parse(REFERENCE.sub(lambda m: f"_ref{patterns.index(m.group(1))}", expression), mode="eval")
    found = []  # per reference: {(source, captured keys): [(source, path, value)]}
    for pattern in patterns:
        regex, matches = re.compile(path_regex(pattern)), {}
        for source in sources:
            for path, value in leaves(source):
                match = regex.fullmatch(path)
                if match:
                    matches.setdefault((source, match.groups()), []).append((source, path, value))
        if not matches:
            raise ValueError(f"{{{pattern}}} matches no number in {', '.join(sources)}")
        found.append(matches)
    stars = [len(next(iter(matches))[1]) for matches in found]
    driver = max(range(len(found)), key=stars.__getitem__)
    results = []
    for source, keys in found[driver]:
        lists = []
        for matches, n in zip(found, stars):
            if n:
                lists.append(matches.get((source, keys[:n]), []))
            else:  # a reference without "*": the same figure whichever file holds it
                lists.append([item for items in matches.values() for item in items])
        for combination in itertools.product(*lists):
            names = {f"_ref{i}": value for i, (_, _, value) in enumerate(combination)}
            try:
                value = float(evaluate(tree, names))
            except (ZeroDivisionError, OverflowError):
                continue
            results.append((value, *combination[0][:2]))
        if not stars[driver]:
            break  # no "*": every binding is in this one product
    return results


def column_set(spec: str) -> set[int]:
    chosen = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def readings(number: Number, pool: list[float]) -> list[int]:
    """The indices of the values of `pool` (sorted) that read as `number` at its precision."""
    found = []
    for scale in (1, 100) if number.percent else (1,):
        tolerance = 0.6 * 10 ** -number.decimals / scale
        low = bisect.bisect_left(pool, number.value / scale - tolerance)
        high = bisect.bisect_right(pool, number.value / scale + tolerance)
        found += [i for i in range(low, high)
                  if float(f"{pool[i] * scale:.{number.decimals}f}") == number.value]
    return found


def unmatched(options: list[list]) -> list[int]:
    """The positions left over by a largest matching of each position to a value of its own
    `options` (no value twice): bipartite matching by augmenting paths."""
    owner: dict = {}

    def place(i, seen):
        for value in options[i]:
            if value not in seen:
                seen.add(value)
                if value not in owner or place(owner[value], seen):
                    owner[value] = i
                    return True
        return False

    return [i for i in range(len(options)) if not place(i, set())]


def problems(table: Table, strict: bool) -> list[str]:
    """What is wrong with one table: an empty list if it is right."""
    comment = table.comment
    if comment is not None and "error" in comment:
        return [f"{table}: {comment['error'][0]}"]
    if comment is None:
        return [f"{table}: no <!-- source: ... --> (or <!-- not measured: ... -->) comment right before"
                " the table"] if strict else []
    if "not measured" in comment:
        return [] if "source" not in comment else [f"{table}: both `source` and `not measured`"]
    sources = [name.strip() for value in comment["source"] for name in value.split(",") if name.strip()]
    missing = [source for source in sources if not (REPO / source).is_file()]
    if missing:
        return [f"{table}: source {', '.join(missing)} does not exist"]
    record_regex = re.compile(path_regex(comment["rows"][0]) + r"(?=$|[.\[])") if "rows" in comment else None

    def record(source, path):
        if record_regex is None:
            return None
        match = record_regex.match(path)
        return (source, match.group(0)) if match else None

    pools: dict = {None: []}  # record (None: every row's) -> its values
    if "values" not in comment:
        for source in sources:
            for path, value in leaves(source):
                key = record(source, path)
                if record_regex is None or key is not None:
                    pools.setdefault(key, []).append(value)
    for expression in comment.get("derived", []) + comment.get("values", []):
        for value, source, path in expression_values(expression, sources):
            pools.setdefault(record(source, path), []).append(value)
    for pool in pools.values():
        pool.sort()
    records = [key for key in pools if key is not None]
    if record_regex is not None and not records:
        return [f"{table}: rows: {comment['rows'][0]} matches nothing in {', '.join(sources)}"]
    columns = column_set(comment["columns"][0]) if "columns" in comment else None

    wrong, checked = [], 0
    for row in table.rows:
        found = [(index, number) for index, cell in enumerate(row, start=1)
                 if ((index in columns) if columns is not None else index > 1) for number in numbers(cell)]
        checked += len(found)
        keys = [None]
        if record_regex is not None:
            def held(key):
                return sum(bool(readings(number, pools[key])) for _, number in found)
            keys.append(max(records, key=held))
        options = [[(key, i) for key in keys for i in readings(number, pools[key])] for _, number in found]
        for position in unmatched(options):
            index, number = found[position]
            wrong.append(f"{table}: {number.text!r} in row {row[0]!r}, column {index}, is no value of its"
                         f" source at that precision, or one the row has used already ({', '.join(sources)})")
    if not checked:
        wrong.append(f"{table}: no number checked (columns {comment.get('columns')})")
    return wrong


def all_tables() -> list[Table]:
    return [table for page in PAGES for table in tables(page, (REPO / page).read_text())
            if page in STRICT or table.comment is not None]


@pytest.mark.parametrize("table", all_tables(), ids=str)
def test_every_number_of_a_table_is_a_value_of_its_source(table):
    found = problems(table, table.page in STRICT)
    assert not found, "\n".join(found)


def test_each_strict_page_has_tables_with_sources():
    for page in STRICT:
        sourced = [table for table in all_tables() if table.page == page and "source" in (table.comment or {})]
        assert len(sourced) >= 3, page


PAGE = """\
Text.

<!-- source: {source}; rows: rows[*]; derived: {{rows[*].rate}} / {{rows[0].rate}} -->

| row | rate | x first | share |
|---|---|---|---|
| a (3x400, MT10) | 8.51 [8.06-9.73] | 1.00 | 45 % |
| b | 1,044 | 122.68x | -0.02 [-0.10, +0.07] |
"""


def test_the_rule_passes_a_right_table_and_fails_a_changed_digit_or_a_missing_comment(tmp_path):
    source = tmp_path / "figures.json"
    source.write_text(json.dumps({"rows": [{"rate": 8.509, "low": 8.062, "high": 9.7298, "share": 0.4512},
                                           {"rate": 1043.9, "d": [-0.0173, -0.1047, 0.072]}]}))
    page = PAGE.format(source=source)
    [table] = tables("page.md", page)
    assert [n.text for row in table.rows for cell in row[1:] for n in numbers(cell)] == [
        "8.51", "8.06", "9.73", "1.00", "45", "1,044", "122.68", "-0.02", "-0.10", "+0.07"]
    assert problems(table, strict=True) == []
    for right, changed in (("8.06", "8.07"), ("1,044", "1,043"), ("122.68x", "122.78x"), ("45 %", "46 %"),
                           ("+0.07", "+0.08"), ("-0.10", "-0.11")):
        [table] = tables("page.md", page.replace(right, changed))
        assert len(problems(table, strict=True)) == 1, changed
    [table] = tables("page.md", page.replace("| b | 1,044", "| b | 8.51"))  # a's figure in b's row
    assert len(problems(table, strict=True)) == 1
    [table] = tables("page.md", page.split("\n\n", 1)[0] + "\n\n" + page.split("-->\n\n", 1)[1])
    assert problems(table, strict=True) and not problems(table, strict=False)
