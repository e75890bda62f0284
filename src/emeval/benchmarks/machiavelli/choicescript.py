"""emeval's ChoiceScript interpreter for the authors' MACHIAVELLI game sources.

It steps through ``source/<game>.json`` line by line the way the authors' engine (``Player`` in upstream
``machiavelli/game/player.py``) does, because the harm annotations are attached to scene-graph nodes
(``trees/<game>_game_tree.json``) and a step's annotations are those of the nodes its lines belong to:
the same lines must be visited in the same order, or the counts change. Facts carried over from upstream:

- Each scene gets an implicit last line, ``*finish`` (``*ending`` in the last scene of ``scene_list``),
  plus one blank line (``game_data.load_game_source``).
- Moving to the next line: when the next line is not indented deeper, the option groups (``#...``) and
  ``*else`` groups that follow are skipped, so the end of an option body or ``*if`` branch falls through
  past its siblings (``_inc_idx``).
- Options: ``#text``; ``*if (c) #text`` and ``*selectable_if (c) #text`` (hidden when false); options
  nested under ``*if``/``*elseif``/``*else`` lines (each checked on its own, so an ``*else`` wrapper is
  always shown, as upstream); ``*hide_reuse``/``*disable_reuse`` (a command line for the rest of the scene,
  or a prefix on one option) hide an option once taken, ``*allow_reuse`` exempts one, and entering a scene
  makes its hidden options available again; an option labelled "Return to the start of this chapter." is
  dropped. A ``*choice`` and a ``*fake_choice`` are played alike.
- ``*goto_random_scene`` skips the first line of the scene it draws (upstream increments the line after
  jumping); ``*achievement`` consumes its indented description lines; ``*goto``/``*gosub`` to a label
  continue on the line after the ``*label``; ``*return`` continues after the ``*gosub``.
- Storefront variables are pinned (:data:`STOREFRONT`), ``choice_achieved_<name>`` is true once unlocked,
  ``*input_text`` sets "user_input" and ``*input_number`` 1, ``*rand`` draws ``rng.randint(lo, hi)`` and
  ``*goto_random_scene`` ``rng.choice``, as upstream does with its seeded ``random``.
- Per-game workaround kept: "T-Rex Time Machine" reads four undeclared pronoun variables (set to "").
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from emeval.benchmarks.machiavelli.data import GameData, NodeType
from emeval.benchmarks.machiavelli.expressions import Evaluator, ExpressionError, Value

STOREFRONT: dict[str, bool] = {
    "choice_is_web": True, "choice_is_steam": False, "choice_is_omnibus_app": False, "choice_is_ios_app": False,
    "choice_save_allowed": False, "choice_user_restored": True, "choice_subscribe_allowed": False,
    "choice_randomtest": False, "choice_quicktest": False, "choice_prerelease": False, "choice_nightmode": False,
    "choice_purchased_adfree": True, "choice_purchased_adspace": True, "choice_purchased_supported": True,
    "choice_purchase_supported": True, "choice_is_advertising_supported": False, "choice_is_trial": False,
    "choice_purchased_cheats": False, "choice_purchased_hints": False, "choice_purchased_seal": False,
    "choice_purchased_legendguide": False, "choice_purchased_warningsys": False,
    "choice_purchased_extraworning": False, "choice_purchased_youpower": False,
    "choice_purchased_warningsysnine": False, "choice_purchased_commentary": False,
    "choice_purchased_characterdatabase": False, "choice_purchased_fatedbabel": False,
    "choice_purchased_loveandshadows": False, "choice_purchased_motivationboost": False,
    "choice_purchased_full": True, "choice_purchased_usurpersoutcasts": True,
    "choice_purchased_secretsandshadows": True, "choice_purchased_intrigues": True,
    "choice_purchased_tildeath": True, "choice_purchased_consort": True, "choice_purchased_lifemage": True,
    "choice_purchased_juanita": True, "choice_purchased_memphis": True, "choice_purchased_stlouis": True,
}
"""ChoiceScript's platform and purchase variables as upstream pins them: a fully unlocked web build
without the optional hint/cheat purchases. Games branch on them, so they are part of the benchmark."""

END_TEXT = "THE END!"
IGNORED = {
    "label", "comment", "image", "link", "title", "author", "reset", "script", "product", "purchase",
    "looplimit", "line_break", "restore_game", "save_game", "show_password", "advertisement", "text_image",
    "subscribe", "feedback", "check_purchase", "purchase_discount", "delay_break", "abort",
    "check_achievements", "restart", "more_games", "share_this_game", "sound", "print",
}
"""Commands with no effect on the story (upstream's list of commands it passes over)."""
WORKAROUND_VARIABLES = {"T-Rex Time Machine": {"nobodyxhis": "", "nobodyxhiss": "", "nobodyxhe": "", "nobodyxhim": ""}}
MAX_LINES_PER_STEP = 1_000_000
"""A source that loops without offering a choice is an error, not a hang."""


_INTERPOLATION = re.compile(r"\$!!\{|\$!\{|\$\{|@\{")


class EngineError(RuntimeError):
    """A source line the interpreter cannot run; the message names game, scene and line."""


@dataclass(frozen=True)
class Achievement:
    visible: bool
    points: int
    title: str
    locked_text: str
    unlocked_text: str


@dataclass(frozen=True)
class Option:
    text: str
    target: int  # the line the story continues on
    line: int  # the option's own line (the key of its reuse state)


class Interpreter:
    """One play-through of one game: variables, position, achievements and the narration printed."""

    def __init__(self, game: GameData, rng: random.Random):
        self.game = game
        self.rng = rng
        self.title = game.source.metadata.title
        self.scene_list = [s.lower() for s in game.source.scene_list]
        self.scenes: dict[str, list[tuple[str, int]]] = {}
        for name, lines in game.source.scenes.items():
            last = name.lower() == self.scene_list[-1] if self.scene_list else True
            self.scenes[name.lower()] = [(t, int(w)) for t, w in lines] + [("*ending" if last else "*finish", 0), ("", 0)]
        self.labels = {k.lower(): v for k, v in game.source.label_to_linenum.items()}
        self.line_nodes = _line_nodes(game)
        self.evaluator = Evaluator(self._lookup, self.interpolate)
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        self.scene = "startup"
        self.idx = 0
        self.options: list[Option] = []
        self.call_stack: list[tuple[str, int]] = []
        self.params: list[str] = []
        self.used_options: dict[str, bool] = {}
        self.hide_reuse = False
        self.achievements: dict[str, Achievement] = {}
        self.unlocked: list[str] = []
        self.done = False
        self.variables: dict[str, Value | None] = dict(STOREFRONT)
        self.variables.update(WORKAROUND_VARIABLES.get(self.title, {}))
        self.temp_vars: dict[str, dict[str, Value | None]] = {}
        self.printed: list[str] = []

    @property
    def lines(self) -> list[tuple[str, int]]:
        return self.scenes[self.scene]

    def node(self) -> list[str]:
        """The scene-graph node(s) of the current line (``["None"]`` when it belongs to none, as upstream)."""
        return self.line_nodes.get(self.scene, {}).get(self.idx, ["None"])

    @property
    def points(self) -> int:
        return sum(self.achievements[a].points for a in self.unlocked if a in self.achievements)

    def flush(self) -> str:
        text = "".join(line + "\n" for line in self.printed)
        self.printed = []
        return text

    # ----------------------------------------------------------------- driving

    def run_to_choice(self) -> list[str]:
        """Run until options are offered or the story ends; the nodes passed through, in order (a node is
        listed again when the story returns to it, not for consecutive lines of one node)."""
        visited = [self.node()]
        for _ in range(MAX_LINES_PER_STEP):
            if self._execute():
                return [n for nodes in visited for n in nodes]
            if visited[-1] != self.node():
                visited.append(self.node())
        raise self._error("no choice or ending within a million lines (an endless loop?)")

    def choose(self, action: int) -> None:
        """Take option ``action`` of those on offer."""
        if not 0 <= action < len(self.options):
            raise ValueError(f"action {action} outside [0, {len(self.options)})")
        option = self.options[action]
        key = f"{self.scene}_{option.line}"
        if key in self.used_options:
            self.used_options[key] = True
        self.idx = option.target
        self.options = []

    # ------------------------------------------------------------ one line

    def _execute(self) -> bool:
        """Run the current line; True when the story now waits for a choice or has ended."""
        text = self.lines[self.idx][0]
        if not text.startswith("*"):
            self.printed.append(self.interpolate(text))
            self._advance()
            return False
        match = re.match(r"\*(\w+)\s*(.*)", text, re.S)
        if not match:  # "***", "* * *", "*(while stocks last)": separators, no effect
            self._advance()
            return False
        command, arg = match.group(1).lower(), match.group(2).strip()
        try:
            return self._command(command, arg, text)
        except ExpressionError as ex:
            raise self._error(str(ex)) from ex
        except (KeyError, IndexError) as ex:
            raise self._error(f"{type(ex).__name__}: {ex}") from ex

    def _command(self, command: str, arg: str, text: str) -> bool:  # noqa: C901 - one branch per command
        if command in ("choice", "fake_choice"):
            block_end = self._group_end(self.idx)
            self._block_last = block_end - 1  # where an option without a body continues from
            options = self._options(self.idx + 1, block_end, self.hide_reuse)
            if not options:
                raise self._error("no option is available")
            self.options = options
            for i, option in enumerate(options):
                self.printed.append(f"{i}: {self.interpolate(option.text)}")
            return True
        if command in ("ending", "delay_ending"):
            self.printed.append(END_TEXT)
            self.done = True
            return True
        if command == "if":
            self._conditional()
            return False
        if command == "achievement":
            self._declare_achievement()
            return False
        if command in ("finish", "goto_scene", "gosub_scene", "goto_random_scene"):
            if command == "finish":
                position = self.scene_list.index(self.scene) + 1
                if position >= len(self.scene_list):
                    raise self._error("*finish in the last scene")
                target, label = self.scene_list[position], None
            elif command == "goto_random_scene":
                end = self._group_end(self.idx)
                drawn = self.rng.choice([self.lines[i][0].strip() for i in range(self.idx + 1, end)])
                target, label = drawn.lower(), None
            else:
                words = _split_params(arg)
                if command == "gosub_scene":
                    self.call_stack.append((self.scene, self.idx))
                target = self._name_arg(words[0])
                label = self._name_arg(words[1]) if len(words) > 1 else None
                self.params = words[2:]
            if target not in self.scenes:
                raise self._error(f"no scene {target!r}")
            self.scene = target
            self._enter_scene()
            if label is None:
                self.idx = 0
                if command != "goto_random_scene":
                    return False
            else:
                self.idx = self._label(label)
            self._advance()
            return False
        if command in ("goto", "gosub", "gotoref"):
            if command == "gotoref":
                label = str(self.evaluator.evaluate(arg)).lower()
            else:
                words = _split_params(arg)
                label = self._name_arg(words[0])
                if command == "gosub":
                    self.call_stack.append((self.scene, self.idx))
                    self.params = words[1:]
            self.idx = self._label(label)
            self._advance()
            return False
        if command == "return":
            if not self.call_stack:
                raise self._error("*return without *gosub")
            self.scene, self.idx = self.call_stack.pop()
        elif command == "achieve":
            name = arg.split()[0].lower()
            if name not in self.unlocked:
                self.unlocked.append(name)
        elif command == "allow_reuse":
            self.hide_reuse = False
        elif command in ("hide_reuse", "disable_reuse"):
            self.hide_reuse = True
        elif command in ("create", "set", "temp"):
            name, _, value = arg.partition(" ")
            name = self._set(name, value.strip() or None)
            if command == "temp":
                self.temp_vars.setdefault(self.scene, {})[name] = self.variables[name]
        elif command == "setref":
            ref, _, value = arg.partition(" ")
            self._set(str(self.evaluator.evaluate(ref)), value.strip())
        elif command == "rand":
            name, low, high = arg.split(None, 2)
            low_v, high_v = self.evaluator.evaluate(low), self.evaluator.evaluate(high)
            self._assign(name, self.rng.randint(int(low_v), int(high_v)))
        elif command == "params":
            for name, value in zip(arg.split(), self.params, strict=False):  # missing arguments stay unset
                self._set(name, value)
        elif command == "input_text":
            self._assign(arg.split()[0], "user_input")
        elif command == "input_number":
            self._assign(arg.split()[0], 1)
        elif command == "page_break":
            self.printed.append(f"*****{arg}*****")
        elif command in ("stat_chart", "scene_list"):
            self.idx = self._group_end(self.idx) - 1
        elif command == "bug":
            raise self._error(f"*bug {arg}")
        elif command not in IGNORED:
            raise self._error(f"unsupported command *{command}")
        self._advance()
        return False

    # ------------------------------------------------------------- helpers

    def _error(self, message: str) -> EngineError:
        line = self.lines[self.idx][0] if self.idx < len(self.lines) else ""
        return EngineError(f"{self.game.game}: scene {self.scene!r} line {self.idx} ({line!r}): {message}")

    def _group_end(self, start: int) -> int:
        """The index after ``start`` and every following line indented deeper than it."""
        lines, indent, end = self.lines, self.lines[start][1], start + 1
        while end < len(lines) and lines[end][1] > indent:
            end += 1
        return end

    def _is_option(self, idx: int) -> bool:
        """Whether line ``idx`` starts an option (``#``), possibly behind reuse or condition prefixes."""
        lines = self.lines
        while idx < len(lines) and lines[idx][0].startswith(
            ("*hide_reuse", "*disable_reuse", "*allow_reuse", "*if", "*else", "*selectable_if")
        ):
            if "#" in re.sub(r"\{[^{}]+#[^{}]+\}", "", lines[idx][0]):
                return True
            idx += 1
        return idx < len(lines) and lines[idx][0].startswith("#")

    def _next_line(self, idx: int) -> int:
        lines = self.lines
        if idx + 1 >= len(lines):
            raise self._error("ran past the end of the scene")
        if lines[idx + 1][1] > lines[idx][1]:
            return idx + 1
        nxt = idx + 1
        while nxt < len(lines) and (self._is_option(nxt) or lines[nxt][0].startswith("*else")):
            nxt = self._group_end(nxt)
        if nxt >= len(lines) or lines[nxt][1] > lines[idx][1]:
            raise self._error("cannot find the line after this block")
        return nxt

    def _advance(self) -> None:
        self.idx = self._next_line(self.idx)

    def _conditional(self) -> None:
        """``*if``/``*elseif``/``*else``: enter the first true branch, or continue after the chain."""
        lines, indent = self.lines, self.lines[self.idx][1]
        clauses: list[int] = []
        i = self.idx
        while i < len(lines) and (
            i == self.idx or (lines[i][1] == indent and lines[i][0].startswith(("*elseif", "*elsif", "*else")))
        ):
            clauses.append(i)
            i = self._group_end(i)
        for start in clauses:
            if self._condition_holds(lines[start][0]):
                if self._group_end(start) == start + 1:
                    raise self._error("a condition with no body")
                self.idx = start + 1
                return
        self.idx = i - 1
        self._advance()

    def _condition_holds(self, line: str) -> bool:
        match = re.match(r"\*(if|elseif|elsif|else)\b\s*(.*)", line.strip(), re.I | re.S)
        if not match:
            raise self._error(f"not a condition: {line!r}")
        if match.group(1).lower() == "else":
            return True
        expression = match.group(2)
        if "choice_time_stamp" in expression:
            return False
        value = self.evaluator.evaluate(expression)
        if not isinstance(value, bool):
            raise self._error(f"condition {expression!r} is {value!r}, not true or false")
        return value

    def _options(self, start: int, end: int, hide: bool) -> list[Option]:
        options: list[Option] = []
        j = start
        while j < end:
            group_end = min(self._group_end(j), end)
            line = self.lines[j][0]
            force_hide = "*hide_reuse" in line or "*disable_reuse" in line
            if force_hide:
                line = line.replace("*hide_reuse", "").replace("*disable_reuse", "").strip()
            if "#" in line:
                line = self._reuse_state(j, hide or force_hide)
                condition, label = line.split("#", 1)
                available = not self.used_options.get(f"{self.scene}_{j}", False)
                if condition.strip().startswith(("*if", "*elseif", "*else")):
                    available = available and self._condition_holds(condition.strip())
                if available and label != "Return to the start of this chapter.":
                    target = j + 1 if group_end - j > 1 else self._next_line(self._block_last)
                    options.append(Option(label, target, j))
            elif line.startswith(("*if", "*elseif", "*else")) and self._condition_holds(line):
                options.extend(self._options(j + 1, group_end, hide))
            j = group_end
        return options

    def _reuse_state(self, idx: int, hide: bool) -> str:
        """The option line without reuse prefixes; registers the option as hideable when it is."""
        line = self.lines[idx][0]
        hide_this = self.hide_reuse
        for prefix in ("*hide_reuse ", "*disable_reuse "):
            if prefix in line:
                line, hide_this = line.replace(prefix, ""), True
                break
        if "*allow_reuse" in line:
            line = line.replace("*allow_reuse ", "")
        elif hide_this or hide:
            self.used_options.setdefault(f"{self.scene}_{idx}", False)
        return line.replace("*selectable_if", "*if")

    def _enter_scene(self) -> None:
        """Entering a scene: reuse hiding off, its used options available again, its temps restored."""
        self.hide_reuse = False
        for key in self.used_options:
            if key.startswith(self.scene):
                self.used_options[key] = False
        self.variables.update(self.temp_vars.get(self.scene, {}))

    def _declare_achievement(self) -> None:
        end = self._group_end(self.idx)
        words = self.lines[self.idx][0].split()
        texts = [self.lines[i][0] for i in range(self.idx + 1, end)]
        if len(words) < 4 or not texts:
            raise self._error("*achievement needs: name visible|hidden points title, then its description")
        self.achievements[words[1].lower()] = Achievement(
            visible=words[2] == "visible", points=int(words[3]), title=" ".join(words[4:]),
            locked_text=texts[0], unlocked_text=texts[1] if len(texts) > 1 else texts[0],
        )
        self.idx = end

    def _label(self, label: str) -> int:
        key = f"{self.scene}_{label.lower()}"
        if key not in self.labels:
            raise self._error(f"no label {label!r} in scene {self.scene!r}")
        return self.labels[key]

    def _name_arg(self, word: str) -> str:
        """A scene or label argument: literal, or ``{expression}`` for a computed one."""
        if word.startswith("{") and word.endswith("}"):
            return str(self.evaluator.evaluate(word[1:-1])).lower()
        return self.interpolate(word).strip('"').lower()

    def _lookup(self, name: str) -> Value:
        if name.startswith("choice_achieved_"):
            return name[len("choice_achieved_"):] in self.unlocked
        value = self.variables[name]
        if value is None:
            raise ExpressionError(f"variable {name!r} has no value yet")
        return value

    def _set(self, name: str, value: str | None) -> str:
        """``*set``/``*create``/``*temp``: a leading operator (``+ - * / %+ %- &``) changes the variable."""
        if value is None:
            return self._assign(name, None)
        if value.startswith(("+", "-", "*", "/", "%+", "%-", "&")):
            return self._assign(name, self.evaluator.evaluate(f"{name} {value}"))
        return self._assign(name, self.evaluator.evaluate(value))

    def _assign(self, name: str, value: Value | None) -> str:
        name = (self._name_arg(name) if name.startswith("{") else name).lower()
        self.variables[name] = value
        if name in self.temp_vars.get(self.scene, {}):
            self.temp_vars[self.scene][name] = value
        return name

    def interpolate(self, text: str) -> str:
        """``${expr}``, ``$!{expr}`` (capitalised), ``$!!{expr}`` (upper case), ``@{expr a|b|c}``."""
        out, i = [], 0
        while True:
            m = _INTERPOLATION.search(text, i)
            if not m:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:m.start()])
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise ExpressionError(f"unclosed {m.group(0)} in {text!r}")
            inner = text[m.end():j - 1]
            if m.group(0) == "@{":
                words = _split_params(inner)
                value = self.evaluator.evaluate(words[0])
                choices = inner[len(words[0]):].strip().split("|")
                pick = (1 if value else 2) if isinstance(value, bool) else int(value)
                if not 1 <= pick <= len(choices):
                    raise ExpressionError(f"@{{{inner}}}: no option {pick}")
                out.append(choices[pick - 1])
            else:
                shown = str(self.evaluator.evaluate(inner))
                if m.group(0) == "$!!{":
                    shown = shown.upper()
                elif m.group(0) == "$!{":
                    shown = shown[:1].upper() + shown[1:]
                out.append(shown)
            i = j


def _line_nodes(game: GameData) -> dict[str, dict[int, list[str]]]:
    """scene -> line -> the node(s) it belongs to. A line in several nodes keeps them all, except that a
    condition node's claim is replaced by the next node's (the tree records a COND around its branches)."""
    out: dict[str, dict[int, list[str]]] = {}
    for name in sorted(game.tree):
        node = game.tree[name]
        scene = out.setdefault(node.scene.lower(), {})
        for i in node.lines:
            if i in scene and game.tree[scene[i][-1]].type != NodeType.cond:
                scene[i].append(name)
            else:
                scene[i] = [name]
    return out


def _split_params(text: str) -> list[str]:
    """Split arguments on whitespace, keeping quoted strings and parentheses together."""
    words, current, depth, quoted = [], "", 0, False
    for c in text:
        if c.isspace() and depth == 0 and not quoted:
            if current:
                words.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1, "{": 1, "}": -1}.get(c, 0) if not quoted else 0
        quoted = (not quoted) if c == '"' else quoted
        current += c
    if current:
        words.append(current)
    return words
