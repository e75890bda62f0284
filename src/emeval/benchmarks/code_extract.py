"""The natural-language answer inside a piece of code (the coding-format eval).

A model asked to answer in code writes its answer into a string, a list of strings or a comment
of the variable the template names (``ANSWERS = ["...", "..."]``). The judge must see that text,
not the code around it, or it rates the code. Model code is often not valid Python: a base model
is cut off mid-list, a chat model adds prose after the code or puts a raw newline in a string. So
the answer is looked for in three ways, strictest first:

1. ``ast``: the code (or its longest leading run of lines that parses) is parsed and the answer is
   every string in the values assigned or appended to the variable; comments inside the
   assignment (found with ``tokenize``) stand in when it holds no string.
2. ``scan``: a lenient scanner reads the value after ``VARIABLE =`` up to its closing bracket or
   end of line: string literals (an unterminated one runs to the end and marks the answer
   truncated), comments, or else unquoted text that is not a Python expression.
3. ``none`` of the above: extraction failed, with the reason kept.

Comments the template itself carried (``# TODO``, the question) never count as answers.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import asdict, dataclass, field

_FENCE = re.compile(r"^[ \t]*```[^\n]*$", re.M)
_STRING_START = re.compile(r"(?i)(?<!\w)([rbuf]{0,2})(\"\"\"|'''|\"|')")
_ANY_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_LIST_METHODS = {"append", "extend", "insert", "add"}
_MAX_TRIMMED_LINES = 400


@dataclass(frozen=True)
class Extraction:
    """What was found: ``answer`` is None when extraction failed (``reason`` says why)."""

    answer: str | None
    items: list[str] = field(default_factory=list)
    method: str | None = None  # "ast", "ast-comments", "ast-return", "scan"
    reason: str | None = None
    truncated: bool = False  # an unterminated string ran to the end of the output

    @property
    def ok(self) -> bool:
        return self.answer is not None

    def as_metadata(self) -> dict:
        return asdict(self)


def extract_answer(
    text: str, variable: str | None = None, function: str | None = None, template: str = ""
) -> Extraction:
    """The answer written into ``text``.

    ``variable``: the name the template asks the model to fill (``None``: every ``name = value``
    assignment counts, answered as ``name: value`` lines, as in the upstream ``*_template``
    questions). ``function``: a function whose returned strings answer when the variable is never
    assigned. ``template``: the prompt the model saw; its comments are not answers.
    """
    if variable is not None and not re.fullmatch(_ANY_NAME, variable):
        raise ValueError(f"answer variable {variable!r} is not a Python name")
    skip = template_comments(template)
    code = code_region(text, variable)
    if not code.strip():
        return Extraction(None, reason="empty output")
    tree, parsed = parse_leading(code)
    reason = None
    if tree is not None:
        found = from_ast(tree, parsed, variable, function, skip)
        if found.ok:
            return found
        reason = found.reason
    items, truncated = from_scan(code, variable, skip)
    if items:
        return Extraction("\n".join(items), items, "scan", truncated=truncated)
    target = f"assignment to {variable}" if variable else "assignment"
    return Extraction(None, reason=reason or f"no {target} holding text (the output is not valid Python)")


def template_comments(template: str) -> set[str]:
    """Comment texts of the prompt (normalised), which the model may echo but never answer with."""
    found = {normalise_comment(c) for c in re.findall(r"#[^\n]*", template)}
    return {c for c in found if c} | {"todo"}


def normalise_comment(comment: str) -> str:
    return " ".join(comment.lstrip("#").split()).lower()


def code_region(text: str, variable: str | None) -> str:
    """The code to search: inside a Markdown fence if there is one, preferring the fenced (or
    unfenced) part that assigns the variable; an unclosed fence runs to the end."""
    parts = _FENCE.split(text)
    if len(parts) == 1:
        return text
    inside, outside = parts[1::2], parts[0::2]
    if variable is not None:
        pattern = re.compile(rf"(?m)^[ \t]*{re.escape(variable)}\b")
        for part in inside + outside:
            if pattern.search(part):
                return part
    return next((p for p in inside if p.strip()), text)


def parse_leading(code: str) -> tuple[ast.Module | None, str]:
    """The code parsed whole, else its longest leading run of lines that parses (output cut
    off mid-statement, or prose after the code); (None, "") when not even that."""
    lines = code.splitlines()
    for end in range(len(lines), max(len(lines) - _MAX_TRIMMED_LINES, 0), -1):
        chunk = "\n".join(lines[:end])
        if not chunk.strip():
            break
        try:
            return ast.parse(chunk), chunk
        except (SyntaxError, ValueError):  # ValueError: NUL bytes
            continue
    return None, ""


# -- ast ------------------------------------------------------------------------------------------


def strings_in(node: ast.AST, source: str = "") -> list[str]:
    """Every non-blank string in an expression, in source order (f-strings keep their
    ``{expressions}`` as written; separators such as the ``"\\n"`` of ``"\\n".join`` drop out).
    Strings on separate lines that Python joins for want of a comma stay separate items."""
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str):
            return []
        if source and (node.end_lineno or node.lineno) > node.lineno:
            pieces = split_lines_literal(ast.get_source_segment(source, node) or "")
            if len(pieces) > 1:
                return [p.strip() for p in pieces if p.strip()]
        return [node.value.strip()] if node.value.strip() else []
    if isinstance(node, ast.JoinedStr):
        text = "".join(
            part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"  # type: ignore[attr-defined]
            for part in node.values
        ).strip()
        return [text] if text else []
    out: list[str] = []
    for child in ast.iter_child_nodes(node):
        out.extend(strings_in(child, source))
    return out


def split_lines_literal(segment: str) -> list[str]:
    """The pieces of an implicitly concatenated string literal, one per source line
    (``"a"\\n"b"`` -> ["a", "b"]); a single literal gives one piece."""
    pieces: list[str] = []
    last_line = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(segment).readline):
            if token.type == tokenize.STRING:
                value = ast.literal_eval(token.string)
                value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                if pieces and token.start[0] == last_line:
                    pieces[-1] += value
                else:
                    pieces.append(value)
                last_line = token.end[0]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return []
    return pieces


def _names(target: ast.AST) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_names(t) for t in target.elts)) if target.elts else set()
    return set()


def assignments(tree: ast.AST, variable: str) -> list[tuple[ast.stmt | ast.expr, ast.expr]]:
    """(statement, value) of every assignment, augmented assignment and list.append-style call
    that gives ``variable`` a value, in source order."""
    found: list[tuple[ast.stmt | ast.expr, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(variable in _names(t) for t in node.targets):
            found.append((node, node.value))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None and variable in _names(node.target):
            found.append((node, node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LIST_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == variable
        ):
            found.extend((node, arg) for arg in node.args)
    return sorted(found, key=lambda pair: (pair[0].lineno, pair[0].col_offset))


def comments_between(code: str, first_line: int, last_line: int, skip: set[str]) -> list[str]:
    """Comments (``tokenize``) on lines first_line..last_line (1-based) not taken from the template."""
    out = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT and first_line <= token.start[0] <= last_line:
                text = token.string.lstrip("#").strip()
                if text and normalise_comment(text) not in skip:
                    out.append(text)
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def from_ast(
    tree: ast.Module, code: str, variable: str | None, function: str | None, skip: set[str]
) -> Extraction:
    if variable is None:
        items = []
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n for t in targets for n in sorted(_names(t))]
                texts = strings_in(node.value, code)
                if names and texts:
                    items.append(f"{names[0]}: {' '.join(texts)}")
        if items:
            return Extraction("\n".join(items), items, "ast")
        return Extraction(None, reason="no assignment holding text")
    found = assignments(tree, variable)
    if not found and function is None:
        return Extraction(None, reason=f"no assignment to {variable}")
    items = [text for _, value in found for text in strings_in(value, code)]
    if items:
        return Extraction("\n".join(items), items, "ast")
    for statement, _ in found:
        items.extend(comments_between(code, statement.lineno, statement.end_lineno or statement.lineno, skip))
    if items:
        return Extraction("\n".join(items), items, "ast-comments")
    if function is not None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
                items = [t for r in ast.walk(node) if isinstance(r, ast.Return) and r.value for t in strings_in(r.value, code)]
                if items:
                    return Extraction("\n".join(items), items, "ast-return")
    return Extraction(None, reason=f"{variable} holds no text" if found else f"no assignment to {variable}")


# -- lenient scan ---------------------------------------------------------------------------------


def _read_string(code: str, start: int, quote: str) -> tuple[int, bool]:
    """End index (after the closing quote) of the string whose opening quote ends at ``start``;
    (len(code), True) when it never closes. Single-quoted strings may run over a raw newline:
    models write them, and the intent is plain."""
    i = start
    while i < len(code):
        if code[i] == "\\":
            i += 2
            continue
        if code.startswith(quote, i):
            return i + len(quote), False
        i += 1
    return len(code), True


def _string_value(literal: str, prefix: str, quote: str, closed: bool) -> str:
    if closed:
        try:
            value = ast.literal_eval(literal)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            return str(value)
        except (SyntaxError, ValueError):
            pass
    body = literal[len(prefix) + len(quote) :]
    return body[: -len(quote)] if closed else body


def scan_value(code: str, start: int, skip: set[str]) -> tuple[list[str], list[str], str, bool]:
    """(strings, comments, raw text without comments, truncated) of the value starting at
    ``start``: up to its closing bracket if it opens one, else to the end of the line (outside strings)."""
    strings: list[str] = []
    comments: list[str] = []
    truncated = False
    depth = 0
    bracketed = code[start : start + 1] in ("[", "(", "{")
    i = start
    while i < len(code):
        c = code[i]
        if c == "#":
            end = code.find("\n", i)
            end = len(code) if end < 0 else end
            text = code[i + 1 : end].strip()
            if text and normalise_comment(text) not in skip:
                comments.append(text)
            i = end
            continue
        m = _STRING_START.match(code, i)
        if m:
            prefix, quote = m.group(1), m.group(2)
            end, open_ended = _read_string(code, m.end(), quote)
            value = _string_value(code[i:end], prefix, quote, not open_ended).strip()
            if open_ended:  # cut off: a quote the model meant to close may trail
                value = value.strip("\"' \n")
            if value:
                strings.append(value)
            truncated |= open_ended
            i = end
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if bracketed and depth <= 0:
                i += 1
                break
        elif c == "\n" and depth <= 0:
            break
        i += 1
    return strings, comments, re.sub(r"#[^\n]*", "", code[start:i]), truncated


def _is_python_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
        return True
    except (SyntaxError, ValueError):
        return False


def from_scan(code: str, variable: str | None, skip: set[str]) -> tuple[list[str], bool]:
    """Items from every ``name = value`` of the variable (or of any name), read leniently."""
    name = re.escape(variable) if variable else f"({_ANY_NAME})"
    assign = re.compile(rf"(?m)^[ \t]*{name}[ \t]*(?::[^=\n]*)?\+?=(?!=)[ \t]*")
    items: list[str] = []
    truncated = False
    for match in assign.finditer(code):
        strings, comments, raw, cut = scan_value(code, match.end(), skip)
        texts = strings or comments
        if not texts:
            plain = raw.strip()
            if plain and re.search(r"[A-Za-z]", plain) and not _is_python_expression(plain):
                texts = [plain]
        if not texts:
            continue
        truncated |= cut and bool(strings)
        if variable is None:
            items.append(f"{match.group(1)}: {' '.join(texts)}")
        else:
            items.extend(texts)
    return items, truncated
