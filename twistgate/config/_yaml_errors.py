"""
YAML syntax errors in plain words.

PyYAML's messages name parser states (``expected <block end>, but found
'<block mapping start>'``); these say what is wrong with the file and point
at the line and column where the fix goes (for an unclosed quote, where the
quote opened, not the end of the file).
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

import yaml

#: PyYAML's token names, as a user would say them.
_TOKENS = {
    "<block end>": "the end of the block",
    "<block mapping start>": "a new 'key: value'",
    "<block sequence start>": "a list",
    "<flow mapping start>": "a '{'",
    "<flow sequence start>": "a '['",
    "<scalar>": "a value",
    "<stream end>": "the end of the file",
    "<document start>": "'---'",
    "<document end>": "'...'",
    "'?'": "a key",
    "'-'": "a '- item'",
    "','": "a ','",
    "':'": "a ':'",
}

Where = Tuple[int, int, str]  # line, column (1-based), message


def describe(error: yaml.MarkedYAMLError) -> Where:
    """Line, column and a plain explanation of a PyYAML syntax error."""
    problem = error.problem or ""
    context = error.context or ""
    at = error.problem_mark or error.context_mark
    line, column = (at.line + 1, at.column + 1) if at is not None else (0, 0)
    started = error.context_mark
    start_line = started.line + 1 if started is not None else None
    found = _found(problem)

    if "quoted scalar" in context and "end of stream" in problem and started is not None:
        return started.line + 1, started.column + 1, "a quoted value starts here but is never closed: add the closing quote"
    if "unknown escape character" in problem:
        char = problem.rsplit(" ", 1)[-1]
        message = (
            f"\\{char.strip(chr(39))} is not an escape YAML knows inside double quotes: "
            "use single quotes, or write \\\\ for a backslash"
        )
        return line, column, message
    if "character '\\t'" in problem:
        return line, column, "a tab character: YAML indents with spaces only"
    if "that cannot start any token" in problem:
        char = re.search(r"character (.+?) that", problem)
        shown = char.group(1) if char else "this character"
        return line, column, f"a value cannot start with {shown}: put the value in quotes"
    if problem.startswith("found undefined alias"):
        name = problem.rsplit(" ", 1)[-1].strip("'")
        return line, column, f"'*{name}' refers to an anchor '&{name}' that is not defined before it"
    if "duplicate anchor" in context:
        return line, column, f"this anchor is defined twice (first on line {start_line})"
    if "single document" in context:
        return line, column, "a second YAML document ('---'): the file must hold exactly one"
    if problem == "sequence entries are not allowed here":
        return line, column, (
            "a '- item' where no list can start: a list after 'key:' begins on the next line, "
            "indented, or is written [a, b]"
        )
    if problem == "mapping keys are not allowed here":
        return line, column, "a '? ' where no key can start: quote the value if it begins with '?'"
    if ("while scanning an anchor" in context or "while scanning an alias" in context) and "alphabetic or numeric" in problem:
        sign = "&" if "anchor" in context else "*"
        return line, column, f"'{sign}' starts an anchor or alias and needs a name after it (or quote the value)"
    if "while scanning a block scalar" in context:
        return line, column, "after '|' or '>' only '+', '-' or an indentation digit may follow on the line"
    if problem == "mapping values are not allowed here":
        return line, column, (
            "a ':' where no 'key: value' can start: on this line or the one before, a ':' or the space "
            "after one is missing, the line is indented wrongly, or a value holding ': ' needs quotes"
        )
    if problem.startswith("could not find expected ':'"):
        return line, column, "expected 'key: value' here: is the ':' (or the space after it) missing?"
    if "flow sequence" in context and "expected ',' or ']'" in problem:
        return line, column, f"expected ',' or ']' in the [...] list that opens on line {start_line}: is a ']' or a ',' missing?"
    if "flow mapping" in context and "expected ',' or '}'" in problem:
        return line, column, (
            f"expected ',' or '}}' in the {{...}} mapping that opens on line {start_line}: "
            "is a '}' or a ',' between two entries missing?"
        )
    if problem.startswith("expected <block end>") and start_line is not None:
        what = "mapping" if "mapping" in context else "list"
        before = _line_before(at)
        if found == "a value" and before.rstrip().endswith(("'", '"')) and before.strip()[:1] not in ("'", '"'):
            return line, column, "more text after a quoted value: put all of the value inside the quotes"
        if found == "a '- item'" and what == "mapping":
            return line, column, (
                f"a list item where the mapping that starts on line {start_line} expects 'key: value': "
                "put the list under a key, indented below it"
            )
        return line, column, (
            f"this line is not indented like the {what} that starts on line {start_line}: the keys of one "
            "mapping, and the '-' items of one list, must start in the same column (indent with spaces)"
        )
    if "did not find expected key" in problem:
        return line, column, f"expected another 'key: value' of the mapping that starts on line {start_line} here"
    if "did not find expected '-' indicator" in problem:
        return line, column, f"expected another '- item' of the list that starts on line {start_line} here"
    if "did not find expected node content" in problem:
        return line, column, "a value is missing here"
    if "end of stream" in problem:
        return line, column, "the file ends in the middle of a value"
    return line, column, _plain(problem)


def describe_reader_error(error: yaml.reader.ReaderError, text: str) -> Where:
    """A character YAML does not allow (NUL, other control characters)."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, str) else chr(error.character)
    return line, column, f"character U+{ord(character):04X} is not allowed in YAML: remove it"


def _line_before(mark: Optional[yaml.Mark]) -> str:
    """The text of the marked line before the mark (empty when PyYAML kept no buffer)."""
    buffer = getattr(mark, "buffer", None)
    if mark is None or not isinstance(buffer, str):
        return ""
    start = buffer.rfind("\n", 0, mark.pointer) + 1
    return buffer[start : mark.pointer]


def _found(problem: str) -> Optional[str]:
    match = re.search(r"but found (.+)$", problem)
    if match is None:
        return None
    token = match.group(1)
    return _TOKENS.get(token) or _TOKENS.get(token.strip("'"), token)


def _plain(problem: str) -> str:
    for token, words in _TOKENS.items():
        problem = problem.replace(token, words)
    return problem.replace("the node content", "a value").strip()
