"""ChoiceScript expressions, tokenised and evaluated by emeval itself (never Python ``eval``).

Why a parser of our own: game sources are third-party text, and an expression like
``__import__('os')`` must be an error, not a call. The grammar is ChoiceScript's: numbers, ``"strings"``
(with ``${...}`` interpolation and ``\\"`` escapes), ``true``/``false``, case-insensitive variable
names, ``{expr}`` (the variable named by a value, ChoiceScript's reference), ``var#n`` (the n-th
character, 1-based), ``+ - * /``, ``modulo`` (or ``%``), ``^`` (power), ``%+``/``%-`` (fairmath),
``&`` (concatenation), ``= != < > <= >=``, ``and``, ``or``, and the functions ``not()``, ``round()``,
``length()``. Precedence is Python's, as upstream evaluates the games after rewriting them into Python
(``=`` becomes ``==``, ``^`` ``**``, ``modulo`` ``%``): ``or`` < ``and`` < ``not`` < comparisons <
``+ - & %+ %-`` < ``* / modulo`` < unary minus < ``^``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Value = bool | int | float | str

MAX_EXPONENT = 1000
"""A larger power is refused: ``9^9^9`` in a hostile source would otherwise hang the run."""
MAX_STRING = 100_000


class ExpressionError(ValueError):
    """An expression that does not parse or cannot be evaluated."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>\d+\.\d*|\.\d+|\d+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>%\+|%-|<=|>=|!=|<>|[-+*/%^&=<>(){},\#])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and", "or", "modulo"}


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kind is number, string, op or name."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"unexpected character {text[pos:pos + 10]!r} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        word = m.group(kind)
        if kind == "name" and word.lower() in _WORD_OPS:
            kind, word = "op", word.lower()
        tokens.append((kind, word))
        pos = m.end()
    return tokens


def _number(value: Value, context: str) -> int | float:
    if isinstance(value, bool):
        raise ExpressionError(f"{context}: a number was expected, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        as_float = float(value)
    except ValueError:
        raise ExpressionError(f"{context}: a number was expected, got {value!r}") from None
    return int(as_float) if as_float.is_integer() and "." not in value else as_float


def _comparable(left: Value, right: Value) -> tuple[Value, Value]:
    """ChoiceScript compares a number with a numeric string as numbers."""
    if isinstance(left, str) != isinstance(right, str) and not isinstance(left, bool) and not isinstance(right, bool):
        try:
            return _number(left, ""), _number(right, "")
        except ExpressionError:
            return left, right
    return left, right


def fairmath(old: Value, change: Value, up: bool) -> int:
    """ChoiceScript's fair addition/subtraction on a 0-100 stat, rounded as upstream rounds it."""
    old_n, change_n = float(_number(old, "fairmath")), float(_number(change, "fairmath"))
    return round(old_n + (100 - old_n) * change_n / 100) if up else round(old_n - old_n * change_n / 100)


def _binary(op: str, left: Value, right: Value) -> Value:
    if op in ("=", "!=", "<>"):
        a, b = _comparable(left, right)
        return (a == b) if op == "=" else (a != b)
    if op in ("<", ">", "<=", ">="):
        a, b = _number(left, op), _number(right, op)
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    if op == "&":
        out = _display(left) + _display(right)
        if len(out) > MAX_STRING:
            raise ExpressionError("string too long")
        return out
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return _binary("&", left, right)
    if op in ("%+", "%-"):
        return fairmath(left, right, op == "%+")
    a, b = _number(left, op), _number(right, op)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op in ("/", "%", "modulo"):
        if b == 0:
            raise ExpressionError(f"division by zero ({left!r} {op} {right!r})")
        return a / b if op == "/" else a % b
    if op == "^":
        if abs(b) > MAX_EXPONENT:
            raise ExpressionError(f"exponent {b!r} too large")
        return a**b
    raise ExpressionError(f"unknown operator {op!r}")


def _display(value: Value) -> str:
    """How upstream prints a value (Python's str: True, 5, 2.5)."""
    return str(value)


class Evaluator:
    """Evaluates expressions against a variable table.

    ``lookup(name)`` returns a variable's value (names arrive lower-cased) and raises ``KeyError`` for
    an unknown one; ``interpolate(text)`` expands ``${...}`` inside string literals.
    """

    def __init__(self, lookup: Callable[[str], Value], interpolate: Callable[[str], str] | None = None):
        self.lookup = lookup
        self.interpolate = interpolate or (lambda s: s)

    def evaluate(self, text: str) -> Value:
        tokens = tokenize(text)
        if not tokens:
            raise ExpressionError("empty expression")
        parser = _Parser(tokens, self, text)
        value = parser.expression()
        if parser.pos != len(tokens):
            raise ExpressionError(f"unexpected {tokens[parser.pos][1]!r} in {text!r}")
        return value

    def variable(self, name: str) -> Value:
        try:
            return self.lookup(name.lower())
        except KeyError:
            raise ExpressionError(f"unknown variable {name!r}") from None


class _Parser:
    """Recursive descent over the token list; evaluates as it parses (expressions are small)."""

    def __init__(self, tokens: list[tuple[str, str]], ev: Evaluator, text: str):
        self.tokens, self.ev, self.text, self.pos = tokens, ev, text, 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, *ops: str) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            return tok[1]
        return None

    def expect(self, op: str) -> None:
        if not self.take(op):
            raise ExpressionError(f"expected {op!r} in {self.text!r}")

    def expression(self) -> Value:
        return self.or_expr()

    def or_expr(self) -> Value:
        value = self.and_expr()
        while self.take("or"):
            right = self.and_expr()
            value = bool(value) or bool(right)
        return value

    def and_expr(self) -> Value:
        value = self.comparison()
        while self.take("and"):
            right = self.comparison()
            value = bool(value) and bool(right)
        return value

    def comparison(self) -> Value:
        value = self.additive()
        op = self.take("=", "!=", "<>", "<", ">", "<=", ">=")
        if op:
            value = _binary(op, value, self.additive())
        return value

    def additive(self) -> Value:
        value = self.multiplicative()
        while op := self.take("+", "-", "&", "%+", "%-"):
            value = _binary(op, value, self.multiplicative())
        return value

    def multiplicative(self) -> Value:
        value = self.unary()
        while op := self.take("*", "/", "%", "modulo"):
            value = _binary(op, value, self.unary())
        return value

    def unary(self) -> Value:
        if self.take("-"):
            return -_number(self.unary(), "unary -")
        if self.take("+"):
            return _number(self.unary(), "unary +")
        return self.power()

    def power(self) -> Value:
        value = self.postfix()
        if self.take("^"):
            value = _binary("^", value, self.unary())
        return value

    def postfix(self) -> Value:
        value = self.atom()
        while self.take("#"):
            position = _number(self.atom(), "#")
            text = _display(value)
            if not 1 <= position <= len(text):
                raise ExpressionError(f"character {position} of {text!r} does not exist")
            value = text[int(position) - 1]
        return value

    def atom(self) -> Value:
        tok = self.peek()
        if tok is None:
            raise ExpressionError(f"expression ends early: {self.text!r}")
        kind, word = tok
        self.pos += 1
        if kind == "number":
            return float(word) if "." in word else int(word)
        if kind == "string":
            body = re.sub(r"\\(.)", r"\1", word[1:-1])
            return self.ev.interpolate(body)
        if kind == "op" and word == "(":
            value = self.expression()
            self.expect(")")
            return value
        if kind == "op" and word == "{":  # a reference: the variable named by the value
            name = self.expression()
            self.expect("}")
            return self.ev.variable(_display(name))
        if kind == "name":
            lower = word.lower()
            if lower in ("true", "false"):
                return lower == "true"
            if lower in _FUNCTIONS and self.take("("):
                arg = self.expression()
                self.expect(")")
                return _FUNCTIONS[lower](arg)
            return self.ev.variable(lower)
        raise ExpressionError(f"unexpected {word!r} in {self.text!r}")


_FUNCTIONS: Mapping[str, Callable[[Any], Value]] = {
    "not": lambda v: not bool(v),
    "round": lambda v: round(_number(v, "round")),
    "length": lambda v: len(_display(v)),
}
