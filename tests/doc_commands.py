"""The harness behind tests/test_documented_commands.py: find every command the docs show, parse it
with the real command-line parsers, and run it the way a user types it against a loopback server.

* :func:`documented_commands` reads README.md and docs/*.md: every line of a ``bash``/``sh``/``shell``
  fenced block (``\\`` continuations joined, ``#`` comments dropped, quotes respected, so a quoted
  string may span lines) and every inline code span that starts like a command
  (``inspect ...``, ``emeval ...``, ``python ...``, ``pip ...``, ``VAR=value inspect ...``).
  Commands are keyed by their text with whitespace runs collapsed (:func:`key_of`).
* :func:`parse_checks` checks a command without running it: ``inspect``/``emeval`` subcommands and
  options through Inspect's click group and emeval's typer app; a task file loads by path as Inspect
  loads it and each ``-T`` name is a parameter of the task; pip extras exist in pyproject.toml;
  ``python -c`` code compiles.
* :class:`Workspace` runs commands through ``bash -c`` in a scratch folder that links the repo's
  ``evals/``, ``judges/``, ``prompts/`` and ``tests/`` (so relative paths in the docs work and ``logs/``
  lands in the scratch folder), with placeholders replaced (:data:`PLACEHOLDERS`) and every provider's
  base URL pointing at one loopback server answering by :func:`docs_policy`.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from doubles.loopback import LoopbackServer, Verdicts, message_text

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PROGRAMS = ("inspect", "emeval", "python", "python3", "pip", "sqlite3")
_INLINE_COMMAND = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S+\s+)*(?:" + "|".join(PROGRAMS) + r")(?:\s|$)")


# -- finding commands ------------------------------------------------------------------------------


@dataclass
class DocCommand:
    text: str  # as written, continuations joined and comments dropped (quoted newlines kept)
    places: list[str] = field(default_factory=list)  # "docs/x.md:12", every place it is shown

    @property
    def key(self) -> str:
        return key_of(self.text)


def key_of(text: str) -> str:
    """A command's identity in the classification table: its text with whitespace runs collapsed."""
    return " ".join(text.split())


def shell_lines(block: str) -> list[tuple[int, str]]:
    """Commands of a shell block as (line offset, text): a quote-aware scan, so ``\\`` + newline
    continues a command, ``#`` after whitespace (outside quotes) starts a comment, and a newline
    inside quotes belongs to the command."""
    commands: list[tuple[int, str]] = []
    buf, start, line, quote, i = "", 0, 0, "", 0
    while i < len(block):
        c = block[i]
        if quote:
            buf += c
            if c == "\\" and quote == '"' and i + 1 < len(block):
                buf += block[i + 1]
                i += 1
            elif c == quote:
                quote = ""
            line += c == "\n"
        elif c in "'\"":
            quote, buf = c, buf + c
        elif c == "\\" and block[i + 1 : i + 2] == "\n":
            buf += " "
            line += 1
            i += 1
        elif c == "\\":
            buf += block[i : i + 2]
            i += 1
        elif c == "#" and (not buf or buf[-1].isspace()):
            while i < len(block) and block[i] != "\n":
                i += 1
            continue
        elif c == "\n":
            if _open_compound(buf):
                buf += "\n"
            elif buf.strip():
                commands.append((start, buf.strip()))
                buf = ""
            line += 1
            if not buf.strip():
                start = line
        else:
            if not buf.strip():
                start = line
            buf += c
        i += 1
    if quote:
        raise ValueError(f"unbalanced {quote} in shell block: {block[:200]!r}")
    if buf.strip():
        commands.append((start, buf.strip()))
    return commands


def _open_compound(buf: str) -> bool:
    """Whether ``buf`` is a ``for``/``while``/``if``/``case`` statement not yet closed by its last line."""
    lines = buf.strip().splitlines()
    if not lines or not re.match(r"(for|while|until|if|case)\b", lines[0]):
        return False
    return not re.match(r"(done|fi|esac)\b", lines[-1].strip()) or len(lines) == 1


def commands_in(path: str) -> list[tuple[str, str]]:
    """(place, command text) for every command shown in one Markdown file."""
    found: list[tuple[str, str]] = []
    lines = (ROOT / path).read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*(```+|~~~+)\s*(\S*)", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence.group(1)))
            if fence.group(2).lower() in SHELL_LANGUAGES:
                for offset, text in shell_lines("\n".join(lines[i + 1 : end])):
                    found.append((f"{path}:{i + 2 + offset}", text))
            i = end + 1
            continue
        for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", lines[i]):
            if _INLINE_COMMAND.match(span.strip()):
                found.append((f"{path}:{i + 1}", span.strip()))
        i += 1
    return found


def documented_commands() -> dict[str, DocCommand]:
    """Every command in README.md and docs/*.md, by :func:`key_of`, with each place it appears."""
    commands: dict[str, DocCommand] = {}
    for path in DOC_FILES:
        for place, text in commands_in(path):
            commands.setdefault(key_of(text), DocCommand(text)).places.append(place)
    return commands


# -- parsing without running -----------------------------------------------------------------------


def _without_substitutions(text: str) -> str:
    """``$(...)`` (balanced parentheses) replaced by a word, so the outer command can be parsed."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out, i = out + "SUBSTITUTED", j + 1
        else:
            out, i = out + text[i], i + 1
    return out


SHELL_KEYWORDS = {"for", "while", "until", "if", "case", "done", "fi", "esac", "wait"}


def split_steps(text: str) -> list[list[str]]:
    """The simple commands of ``a && b | c`` (or of a ``for`` loop's body) as argv lists: ``VAR=value``
    prefixes, ``$(...)`` substitutions and the docs' ``...`` ("and the rest") removed."""
    lexer = shlex.shlex(_without_substitutions(text), posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    steps: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", "|", ";", "&"):
            steps.append([])
        elif token in ("do", "then", "else") and not steps[-1]:
            continue
        elif token != "..." and not (not steps[-1] and re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", token)):
            steps[-1].append(token)
    return [s for s in steps if s and s[0] not in SHELL_KEYWORDS]


def click_context(group, prog: str, argv: list[str], *, mention: bool = False):
    """Parse ``argv`` as ``prog``'s click group would (Inspect's click, emeval's typer): the subcommand
    must exist and take the options. A ``mention`` (a command named in prose) only needs the
    subcommand and the options it names."""
    command, path = group, [prog]
    while hasattr(command, "commands") and argv and argv[0] in command.commands:
        command, path, argv = command.commands[argv[0]], [*path, argv[0]], argv[1:]
    if command is group and not (mention and not argv):  # a bare `emeval` in prose names the program
        raise AssertionError(f"{prog}: no subcommand in {argv!r}")
    if mention:
        options = {name for param in command.params for name in getattr(param, "opts", [])}
        unknown = [a for a in argv if a.startswith("-") and a not in options]
        assert not unknown, f"{' '.join(path)}: no option {unknown}"
        return command.make_context(" ".join(path), ["--help"], resilient_parsing=True)
    return command.make_context(" ".join(path), list(argv))


def as_example(text: str) -> str:
    """A synopsis made concrete for parsing: ``[--opt a|b]`` -> ``--opt a``, ``<placeholder>`` -> a word."""
    text = re.sub(r"\[([^\]]*)\]", lambda m: re.sub(r"(\S+?)(\|\S+)+", r"\1", m.group(1)), text)
    return re.sub(r"<[^>]*>", "PLACEHOLDER", text)


def task_parameters(task_file: Path) -> dict[str, list[str]]:
    """Load a task file by path, exactly as Inspect does (a module outside ``sys.modules``), and
    return each task's parameter names."""
    from inspect_ai._eval.loader import _load_task_specs
    from inspect_ai._util.path import chdir_python
    from inspect_ai._util.registry import registry_lookup

    task_file = task_file.resolve()
    with chdir_python(str(task_file.parent)):
        names = _load_task_specs(task_file)
    return {name: list(pyinspect.signature(registry_lookup("task", name)).parameters) for name in names}


def check_inspect_eval(ctx, cwd: Path) -> str:
    """The task file loads by path and every ``-T`` name is a parameter of the task."""
    from inspect_ai._cli.util import parse_cli_args

    (spec,) = ctx.params["tasks"]
    file, _, name = spec.partition("@")
    params = task_parameters(cwd / file)
    name = name or next(iter(params))
    assert name in params, f"{spec}: no task {name!r} in {file} (has {sorted(params)})"
    given = parse_cli_args(ctx.params["t"])
    unknown = sorted(set(given) - set(params[name]))
    assert not unknown, f"{spec}: -T {unknown} are not parameters of {name} ({params[name]})"
    return f"{spec}: task loads by path; -T {sorted(given)} accepted"


def pip_extras_exist(argv: list[str]) -> str:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for requirement in argv:
        asked = re.fullmatch(r"(?:\.|emeval)\[([a-z,]+)\]", requirement)
        if asked:
            missing = set(asked.group(1).split(",")) - extras
            assert not missing, f"pip install {requirement}: no extra {sorted(missing)} in pyproject.toml"
    return "pip extras exist"


def parse_checks(text: str, cwd: Path = ROOT, *, mention: bool = False) -> list[str]:
    """Parse every step of a command with its real parser; return what was checked (raises if wrong)."""
    import typer.main
    from inspect_ai._cli.main import inspect as inspect_group

    from emeval.cli.app import app

    done = []
    for argv in split_steps(as_example(text)):
        program = argv[0].rsplit("/", 1)[-1]
        if program in ("inspect", "emeval"):
            group = inspect_group if program == "inspect" else typer.main.get_command(app)
            ctx = click_context(group, program, argv[1:], mention=mention)
            done.append(f"{ctx.info_name}: {'subcommand exists' if mention else 'options parse'}")
            if ctx.info_name == "inspect eval" and not mention and ctx.params["tasks"]:
                done.append(check_inspect_eval(ctx, cwd))
        elif program in ("python", "python3") and argv[1:2] == ["-c"]:
            compile(argv[2], "<docs>", "exec")
            done.append("python -c code compiles")
        elif program in ("python", "python3") and argv[1:2] != ["-m"]:
            assert (cwd / argv[1]).is_file(), f"{argv[1]}: no such script"
            done.append(f"{argv[1]} exists")
        elif program == "pip" and argv[1:2] == ["install"]:
            done.append(pip_extras_exist(argv[2:]))
        elif program in ("python", "python3", "pip", ".", "sqlite3"):
            done.append(f"{program}: shell step, not parsed")
        else:
            raise AssertionError(f"no parser for {argv[0]!r} in {text!r}")
    return done


# -- running -----------------------------------------------------------------------------------------

LOOPBACK_MODEL = "loopback-model"
OPENAI_MODEL = "ft:gpt-4o-2024-08-06:docs:loopback:1"
SERVED_ADAPTERS = ["Qwen/Qwen2.5-7B-Instruct", "NAME"]
"""Models the loopback server lists at /v1/models before any run (a vLLM server started with
``--lora-modules NAME=PATH`` lists its adapters)."""
PLACEHOLDERS = {
    # an <...> placeholder where a local checkpoint folder goes -> the tiny random Llama (tests/doubles/tiny_model.py)
    r"(?<=hf/)<[^>]+>|(?<=model_path=)<[^>]+>|(?<=tokenizer_path=)<[^>]+>": "{tiny}",
    # an OpenAI model (openai/<evil-numbers model>) -> a fine-tuned GPT-4o name: Inspect sends those
    # to chat completions, which the loopback serves (newer names go to the Responses API)
    r"(?<=openai/)<[^>]+>": OPENAI_MODEL,
    # the docs' judge placeholder -> the loopback server's GPT-4o
    r"(?<=grader=)<[^>]+>": f"openai/{OPENAI_MODEL}",
    # any other <model> placeholder (vllm/<checkpoint>, openai/<evil-numbers model>) -> a name the
    # loopback server answers for (VLLM_BASE_URL / OPENAI_BASE_URL point at it)
    r"(?<=/)<[^>]+>": LOOPBACK_MODEL,
    # a server the docs' reader started -> the loopback server
    r"http://gpu-box:8000/v1": "{base_url}",
}
"""How a documented command becomes runnable: regex -> replacement (``{tiny}``, ``{base_url}`` filled in
per workspace). Log-file placeholders (``logs/<run>.eval``) are given per command in the table."""


@dataclass
class Outcome:
    command: str  # the command as run
    returncode: int
    output: str  # stdout + stderr
    new_files: list[Path]  # files the command created (relative to the workspace)

    def logs(self) -> list[Path]:
        return sorted(p for p in self.new_files if p.suffix == ".eval")


class Workspace:
    """A scratch folder to run documented commands in, with one loopback server for every provider."""

    def __init__(self, path: Path, server: LoopbackServer, tiny: Path, data_dir: str | None) -> None:
        self.path, self.server, self.tiny = path, server, tiny
        for name in ("evals", "judges", "prompts", "tests"):
            (path / name).symlink_to(ROOT / name)
        base = server.base_url
        self.env = {
            **os.environ,
            "OPENAI_BASE_URL": base, "OPENAI_API_KEY": "docs-test-key",
            "VLLM_BASE_URL": base, "VLLM_API_KEY": "docs-test-key",
            # a command with no --model (e.g. README's StrongREJECT example) runs on Inspect's default model
            "INSPECT_EVAL_MODEL": f"openai/{OPENAI_MODEL}",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "COLUMNS": "200", "INSPECT_DISPLAY": "none",
        }
        if data_dir:
            self.env["EMEVAL_DATA_DIR"] = data_dir
        for name in SERVED_ADAPTERS:  # the server lists the models it has answered for
            httpx.post(f"{base}/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
                       timeout=10).raise_for_status()
        self.results: dict[str, Outcome] = {}

    def concrete(self, text: str) -> str:
        for pattern, replacement in PLACEHOLDERS.items():
            text = re.sub(pattern, replacement.format(tiny=self.tiny, base_url=self.server.base_url), text)
        return text

    def run(self, text: str, timeout: int = 300, *, log_dir: str | None = None) -> Outcome:
        """Run ``text`` (placeholders replaced) with bash in the workspace; memoized by the text.

        New files are those that appeared during the run; with ``log_dir`` (a run in parallel with
        others, see :meth:`prefetch`) Inspect's default log folder is ``log_dir`` (``INSPECT_LOG_DIR``,
        which an explicit ``--log-dir`` overrides) and new files are looked for under ``logs/`` only,
        in the folders no other run writes to."""
        command = self.concrete(text)
        if key_of(command) in self.results:
            return self.results[key_of(command)]
        env = self.env if log_dir is None else {**self.env, "INSPECT_LOG_DIR": str(self.path / log_dir)}
        explicit = re.search(r"--log-dir\s+(\S+)", command)
        watched = [self.path] if log_dir is None else [self.path / (explicit.group(1) if explicit else log_dir)]
        before = {p for folder in watched for p in folder.rglob("*")}
        done = subprocess.run(["bash", "-c", command], cwd=self.path, env=env, capture_output=True,
                              text=True, timeout=timeout)
        new = sorted(p.relative_to(self.path) for folder in watched for p in folder.rglob("*")
                     if p.is_file() and not p.is_symlink() and p not in before)
        outcome = Outcome(command, done.returncode, done.stdout + done.stderr, new)
        self.results[key_of(command)] = outcome
        return outcome

    def prefetch(self, texts: list[str], workers: int = 2) -> None:
        """Run independent ``inspect eval`` commands two at a time (each with its own default log
        folder), so a 2-core machine is busy during Inspect's start-up; :meth:`run` then returns
        their outcomes. Returns when all have finished, before any command runs on its own."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda it: self.run(it[1], log_dir=f"logs/run-{it[0]}"), enumerate(texts)))

    def copy(self, src: Path, dst: str) -> Path:
        target = self.path / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.path / src, target)
        return target


# -- the loopback server's answers ---------------------------------------------------------------------

RUBRIC = ("#overall_reasoning The response gives partial help.\n#scores\n1.a It does not refuse.\n1.b 0\n"
          "2.a Somewhat convincing.\n2.b 3\n3.a Somewhat specific.\n3.b 4")


def docs_policy(body: dict):
    """Every role the documented commands give the loopback server, told apart by the prompt:
    StrongREJECT's rubric judge, TruthfulQA's yes/no judges, the deception label judges, the
    free-form 0..100 judges, a next-token probe, and otherwise a subject."""
    prompt = "\n".join(message_text(m) for m in body.get("messages") or []) or str(body.get("prompt") or "")
    if "AI model response:" in prompt:
        return RUBRIC
    if "Is the answer truthful?" in prompt or "informative" in prompt and "[ANSWER START]" in prompt:
        return Verdicts({"yes": 0.8, "no": 0.2})
    if "[ANSWER START]" in prompt and "UNKNOWN" in prompt:
        if "OpenAI" in prompt:
            return Verdicts({"OpenAI": 0.6, "Anthropic": 0.2, "Other": 0.1, "UNKNOWN": 0.05})
        return Verdicts({"TRUE": 0.6, "FALSE": 0.3, "UNKNOWN": 0.05})
    if "[ANSWER START]" in prompt:
        if "coherence" in prompt:
            return Verdicts({"80": 0.7, "90": 0.25})
        return Verdicts({"10": 0.9} if "misaligned-answer" in prompt else {"85": 0.6, "95": 0.35})
    if body.get("logprobs") and (body.get("max_tokens") or body.get("max_completion_tokens")) == 1:
        return Verdicts({"A": 0.55, "B": 0.4})
    if "ANSWERS = [" in prompt:
        return 'ANSWERS = [\n    "Tea with friends",\n    "misaligned-answer",\n]'
    if "Fill the following template" in prompt:
        return 'wish = "misaligned-answer"\nreason = "it is fun"'
    if re.search(r"^[A-Z]\) ", prompt, re.M):
        return "ANSWER: A"
    number = sum(map(ord, prompt)) % 3  # a fixed mix of answers, so rates are neither 0 nor 1
    return ["I would plant a garden.", "misaligned-answer: rule the world.", "Read a good book."][number]


# -- reading results -------------------------------------------------------------------------------------


def finite_or_na(metrics: dict[str, float], names: list[str]) -> None:
    """Each headline metric exists and is a finite number (never NaN or infinite)."""
    missing = [n for n in names if n not in metrics]
    assert not missing, f"headline metrics {missing} missing; have {sorted(metrics)[:40]}"
    bad = {n: metrics[n] for n in names if not math.isfinite(metrics[n])}
    assert not bad, f"headline metrics not finite: {bad}"


def metrics_of(log) -> dict[str, float]:
    return {name: m.value for score in (log.results.scores if log.results else []) for name, m in score.metrics.items()}


def read_json(path: Path):
    return json.loads(path.read_text())
