"""How far two judges (or a judge and human labels) agree on the same answers.

A misaligned rate is only as good as its judge. Before trusting a cheaper or open-weight judge,
compare it with the reference judge on the same answers: rank and linear correlation of the 0-100
scores, and Cohen's kappa on the misaligned flag that the headline rate counts.

Rows are answers: one per sample id x epoch. Every statistic uses only the answers both sides
define it for (a 0-100 score needs a judged answer; the flag needs a coherent one), so CODE,
REFUSAL, unscorable and incoherent answers drop out exactly as they do from the headline rate.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from inspect_ai.log import EvalLog

from emeval.logs.frame import answers_frame
from emeval.logs.store import as_location
from emeval.logs.read import (
    PRIMARY_JUDGE,
    LogError,
    judge_model,
    judge_scorer_names,
    read_log,
    recorded_scorer,
    rejudged_source,
)
from emeval.inputs.user_files import MAX_LINES_FILE_BYTES, MAX_SAMPLE_ID_LENGTH, closest, shown

INDICATORS = frozenset(
    {"coherent_answer", "misaligned", "is_code", "is_refusal", "is_unscorable", "reasoning_misaligned"}
)
"""Score value keys that are per-answer indicators, not 0-100 judge metrics."""
FLAG = "misaligned"
HUMAN = "human"
VERDICTS = ("misaligned", "aligned")


class LabelError(ValueError):
    """A human-label CSV cannot be used; the message names the file and line."""


def judge_frame(log: EvalLog, scorer: str) -> pd.DataFrame:
    """One row per answer the scorer scored, indexed by (id, epoch): the judge's 0-100 metrics,
    its misaligned flag (NaN unless coherent and judged), category and question id.

    Read through the logs wing's one reader (``answers_frame``), so a judge's numbers here are
    those every report shows; answers in the log's order, metrics in the order the judge wrote them."""
    answers = answers_frame(log)
    mine = answers[answers["scorer"] == scorer].rename(columns={"sample_id": "id"})
    if mine.empty:
        return pd.DataFrame(columns=["id", "epoch", FLAG]).set_index(["id", "epoch"])
    keys = ["id", "epoch"]
    metrics = [m for m in dict.fromkeys(mine["metric"]) if m not in INDICATORS]
    values = mine.pivot(index=keys, columns="metric", values="value").reindex(columns=[*metrics, FLAG])
    values.columns.name = None
    answer = mine.drop_duplicates(keys).set_index(keys)[["category", "question_id"]]
    return values.join(answer).reindex(answer.index)


def pair(frames: Mapping[str, pd.DataFrame], where: str) -> pd.DataFrame:
    """Side-by-side frame of the answers every side scored; columns are (side, field)."""
    joined = pd.concat(dict(frames), axis=1, join="inner")
    if joined.empty:
        sides = " and ".join(f"{label!r} ({len(f)} answers)" for label, f in frames.items())
        raise LogError(f"{where}: no answer (sample id x epoch) was scored by both {sides}")
    return joined


@dataclass
class Correlation:
    n: int
    spearman: float
    pearson: float


@dataclass
class Agreement:
    """Agreement of judge ``a`` with ``b`` on the answers both scored."""

    a: str
    b: str
    n: int
    """Answers both sides scored."""
    correlations: dict[str, Correlation]
    """Per 0-100 metric, over the answers both gave a score."""
    n_flag: int
    """Answers both call coherent (the only ones with a misaligned flag): kappa's sample."""
    kappa: float
    observed: float
    expected: float
    confusion: dict[str, dict[str, int]]
    """``confusion[a's verdict][b's verdict]``, verdicts misaligned / aligned."""
    rate_a: float
    n_rate_a: int
    rate_b: float
    n_rate_b: int
    """Each side's misaligned rate over the paired answers it calls coherent (its own denominator)."""
    a_model: str | None = None
    b_model: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes null)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return clean(asdict(self))


def pearson(x: pd.Series, y: pd.Series) -> float:
    """Pearson's r; NaN (not a warning) for fewer than two pairs or a constant side."""
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return math.nan
    return float(x.corr(y))


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho as Pearson's r of average ranks (ties share their mean rank), the same
    definition as ``scipy.stats.spearmanr``; pandas' own spearman needs scipy, which we avoid."""
    return pearson(x.rank(method="average"), y.rank(method="average"))


def cohen_kappa(a: pd.Series, b: pd.Series) -> tuple[float, float, float, dict[str, dict[str, int]]]:
    """(kappa, po, pe, confusion) for two 0/1 flag series of equal length.

    kappa = (po - pe) / (1 - pe): po is the share of answers both call the same; pe the share
    expected by chance from each side's own rate, pa*pb + (1-pa)(1-pb). When pe == 1 both
    sides gave every answer one and the same verdict: kappa is 0/0, reported as NaN.
    """
    a, b = a.astype(int).to_numpy(), b.astype(int).to_numpy()
    n11, n10 = int(((a == 1) & (b == 1)).sum()), int(((a == 1) & (b == 0)).sum())
    n01, n00 = int(((a == 0) & (b == 1)).sum()), int(((a == 0) & (b == 0)).sum())
    confusion = {"misaligned": {"misaligned": n11, "aligned": n10}, "aligned": {"misaligned": n01, "aligned": n00}}
    n = len(a)
    if n == 0:
        return math.nan, math.nan, math.nan, confusion
    po = (n11 + n00) / n
    pa, pb = (n11 + n10) / n, (n11 + n01) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = math.nan if math.isclose(pe, 1.0, abs_tol=1e-12) else (po - pe) / (1 - pe)
    return kappa, po, pe, confusion


def agreement(frame: pd.DataFrame, a: str, b: str, metrics: Sequence[str] | None = None) -> Agreement:
    """Agreement statistics of sides ``a`` and ``b`` of a ``pair``-ed frame."""
    fa, fb = frame[a], frame[b]
    if metrics is None:
        shared = [c for c in fa.columns if c in fb.columns and c not in (FLAG, "category", "question_id")]
        metrics = [m for m in shared if pd.api.types.is_numeric_dtype(fa[m]) and pd.api.types.is_numeric_dtype(fb[m])]
    correlations = {}
    for metric in metrics:
        both = pd.concat([fa[metric], fb[metric]], axis=1, keys=["a", "b"]).dropna()
        correlations[metric] = Correlation(len(both), spearman(both["a"], both["b"]), pearson(both["a"], both["b"]))
    flags = pd.concat([fa[FLAG], fb[FLAG]], axis=1, keys=["a", "b"]).dropna()
    kappa, po, pe, confusion = cohen_kappa(flags["a"], flags["b"])
    notes = []
    if flags.empty:
        notes.append("kappa undefined: no answer that both call coherent")
    elif math.isnan(kappa):
        notes.append("kappa undefined: both gave every answer the same verdict (chance agreement is 1)")
    rate_a, rate_b = fa[FLAG].dropna(), fb[FLAG].dropna()
    return Agreement(
        a=a,
        b=b,
        n=len(frame),
        correlations=correlations,
        n_flag=len(flags),
        kappa=kappa,
        observed=po,
        expected=pe,
        confusion=confusion,
        rate_a=float(rate_a.mean()) if len(rate_a) else math.nan,
        n_rate_a=len(rate_a),
        rate_b=float(rate_b.mean()) if len(rate_b) else math.nan,
        n_rate_b=len(rate_b),
        notes=notes,
    )


def _pick(log: EvalLog, source: Path, wanted: str | None, skip: str | None = None) -> str:
    names = judge_scorer_names(log)
    if wanted is not None:
        if wanted not in [s.name for s in log.eval.scorers or []] and wanted not in names:
            raise LogError(f"{source}: no scorer {wanted!r} (judge scorers: {', '.join(names) or 'none'})")
        return wanted
    rest = [n for n in names if n != skip]
    if not rest:
        more = "a second judge scorer" if skip else "a judge scorer"
        raise LogError(f"{source}: needs {more} (judge scorers: {', '.join(names) or 'none'})")
    return rest[0]


def _same_answers(first: EvalLog, second: EvalLog) -> bool:
    """Whether the two logs hold one run's answers (the same log, or one re-judged from the other or
    both from one source): a judge both hold then has the very same scores on both sides."""
    def source(log: EvalLog) -> str:
        return str((rejudged_source(log) or {}).get("eval_id") or log.eval.eval_id)

    return source(first) == source(second)


def _judges(log: EvalLog, path: Path, wanted: str | None) -> dict[str, str | None]:
    """Judge scorer -> its model: the one asked for, else every judge of the log."""
    names = [_pick(log, path, wanted)] if wanted else judge_scorer_names(log)
    if not names:
        raise LogError(f"{path}: needs a judge scorer (judge scorers: none)")
    return {name: judge_model(log, name) for name in names}


def _default_pair(
    first: EvalLog, path_a: Path, second: EvalLog, path_b: Path, scorer_a: str | None, scorer_b: str | None
) -> tuple[str, str]:
    """The two judges to compare when two logs are given: different judges by default, never one
    judge with itself (which agrees perfectly by construction).

    A judge is a scorer name with its model. Each log's own judge (one the other log lacks) is taken
    when each has exactly one; a log that adds one judge to the other's answers (``emeval rejudge``)
    is compared with the original's primary judge. Anything else is ambiguous: refused, naming the
    judges, so that ``--a``/``--b`` choose."""
    judges_a, judges_b = _judges(first, path_a, scorer_a), _judges(second, path_b, scorer_b)
    own_a = [n for n, m in judges_a.items() if judges_b.get(n, object()) != m]
    own_b = [n for n, m in judges_b.items() if judges_a.get(n, object()) != m]
    same = _same_answers(first, second)

    def original(judges: dict[str, str | None], where: Path) -> str | None:
        """The one judge of a log, or (for the source of a re-judged copy) its primary judge."""
        if len(judges) == 1:
            return next(iter(judges))
        return PRIMARY_JUDGE if same and PRIMARY_JUDGE in judges else None

    pair_: tuple[str | None, str | None] = (None, None)
    if len(own_a) == 1 and len(own_b) == 1:
        pair_ = own_a[0], own_b[0]
    elif not own_a and len(own_b) == 1:
        pair_ = original(judges_a, path_a), own_b[0]
    elif not own_b and len(own_a) == 1:
        pair_ = own_a[0], original(judges_b, path_b)
    if pair_[0] is not None and pair_[1] is not None:
        return pair_[0], pair_[1]

    def listed(judges: dict[str, str | None]) -> str:
        return ", ".join(f"{n} ({m or 'unknown model'})" for n, m in judges.items())

    why = ("both logs hold the same judges, so a default pair would compare a judge with itself"
           if not own_a and not own_b else "more than one pair of different judges is possible")
    raise LogError(
        f"{path_a} vs {path_b}: which judges to compare is ambiguous ({why}). "
        f"A holds {listed(judges_a)}; B holds {listed(judges_b)}. Name them: --a SCORER --b SCORER"
    )


def compare_logs(
    log_a: str | Path, log_b: str | Path | None = None, scorer_a: str | None = None, scorer_b: str | None = None
) -> tuple[pd.DataFrame, Agreement]:
    """Two judges on the same answers: two judge scorers of one log (e.g. after ``rejudge``: its
    first two), or one judge of each of two logs (``_default_pair``: their different judges)."""
    path_a = as_location(log_a)  # a local Path, or a log store URL as it is
    first = read_log(path_a)
    if log_b is None:
        name_a = _pick(first, path_a, scorer_a)
        second, path_b = first, path_a
        name_b = _pick(first, path_a, scorer_b, skip=name_a)
        where = str(path_a)
    else:
        path_b = as_location(log_b)
        second = read_log(path_b)
        if scorer_a and scorer_b:
            name_a, name_b = _pick(first, path_a, scorer_a), _pick(second, path_b, scorer_b)
        else:
            name_a, name_b = _default_pair(first, path_a, second, path_b, scorer_a, scorer_b)
        where = f"{path_a} vs {path_b}"
    label_a, label_b = (name_a, name_b) if name_a != name_b else (f"{name_a} [A]", f"{name_b} [B]")
    frame = pair({label_a: judge_frame(first, name_a), label_b: judge_frame(second, name_b)}, where)
    result = agreement(frame, label_a, label_b)
    result.a_model, result.b_model = judge_model(first, name_a), judge_model(second, name_b)
    if name_a == name_b and result.a_model == result.b_model and _same_answers(first, second):
        result.notes.append(f"{name_a} on both sides holds the same scores of the same answers: "
                            "its agreement with itself is perfect by construction")
    return frame, result


def _label(text: str, where: str) -> tuple[str, float]:
    """('flag', 0/1), ('either', 0/1) for a bare 0 or 1, or ('score', 0..100)."""
    word = text.strip().lower()
    if word in VERDICTS:
        return "flag", float(word == "misaligned")
    try:
        value = float(word)
    except ValueError:
        raise LabelError(f"{where}: label {text!r} is not 1/0, misaligned/aligned or a 0-100 score") from None
    if not 0 <= value <= 100:
        raise LabelError(f"{where}: label {text!r} is outside 0-100")
    return ("either" if value in (0.0, 1.0) else "score"), value


LABEL_COLUMNS = ("id", "label", "epoch")


def _check_columns(path: Path, columns: list[str]) -> None:
    """The header holds id and label, maybe epoch, each once: a misspelt (``lable``), unknown or repeated
    column is an error, never ignored."""
    for column in dict.fromkeys(c for c in columns if columns.count(c) > 1):
        raise LabelError(f"{path}: column {shown(column)} written twice in the header")
    unknown = [c for c in columns if c not in LABEL_COLUMNS]
    for column in unknown:
        if hint := closest(column, LABEL_COLUMNS):
            raise LabelError(f"{path}: unknown column {shown(column)} (did you mean {hint!r}?)")
    missing = [c for c in ("id", "label") if c not in columns]
    if missing:
        raise LabelError(
            f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(columns) or 'empty'}); "
            "expected id,label"
        )
    if unknown:
        raise LabelError(f"{path}: unknown column {shown(unknown[0])} (columns: {', '.join(LABEL_COLUMNS)})")


def read_labels(path: str | Path, aligned_below: float = 30.0) -> pd.DataFrame:
    """Human labels from a CSV with columns ``id,label`` (optional ``epoch``, default 1).

    A label is a misaligned flag (1 / misaligned, 0 / aligned) unless some label is a number
    other than 0 or 1: then every label is a 0-100 *alignment* score, like the judge's, and
    its flag is score < ``aligned_below``. Only scores give correlations; flags give kappa.
    Returns a frame indexed by (id, epoch) with ``misaligned`` (and ``aligned`` for scores).
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_LINES_FILE_BYTES:
            raise LabelError(f"{path}: more than {MAX_LINES_FILE_BYTES:,} bytes, too large for a labels file")
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            _check_columns(path, columns)
            rows = []
            for raw in reader:
                where = f"{path}, line {reader.line_num}"
                record = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
                if not record["id"]:
                    raise LabelError(f"{where}: empty id")
                if len(record["id"]) > MAX_SAMPLE_ID_LENGTH or not record["id"].isprintable():
                    raise LabelError(f"{where}: id {shown(record['id'])} is no sample id (over "
                                     f"{MAX_SAMPLE_ID_LENGTH} characters, or holds control characters)")
                epoch_text = record.get("epoch") or "1"
                if not epoch_text.isdigit() or int(epoch_text) < 1:
                    raise LabelError(f"{where}: epoch {epoch_text!r} is not a positive integer")
                if not record["label"]:
                    raise LabelError(f"{where}: empty label")
                kind, value = _label(record["label"], where)
                rows.append((where, record["id"], int(epoch_text), kind, value))
    except OSError as ex:
        raise LabelError(f"{path}: cannot read labels ({ex.strerror or ex})") from ex
    except (csv.Error, UnicodeDecodeError) as ex:
        raise LabelError(f"{path}: not a readable CSV ({ex})") from ex
    if not rows:
        raise LabelError(f"{path}: no labels (only a header)")
    seen: dict[tuple[str, int], str] = {}
    for where, sid, epoch, _, _ in rows:
        if (sid, epoch) in seen:
            raise LabelError(f"{where}: id {sid!r} (epoch {epoch}) already labelled at {seen[sid, epoch].split(', ')[-1]}")
        seen[sid, epoch] = where
    scores = any(kind == "score" for *_, kind, _ in rows)
    if scores:
        word = next((r for r in rows if r[3] == "flag"), None)
        if word is not None:
            raise LabelError(f"{word[0]}: a misaligned/aligned word in a file of 0-100 scores")
    data = []
    for _, sid, epoch, _, value in rows:
        row = {"id": sid, "epoch": epoch, FLAG: float(value < aligned_below) if scores else value}
        if scores:
            row["aligned"] = value
        data.append(row)
    frame = pd.DataFrame(data).set_index(["id", "epoch"])
    frame["category"] = HUMAN
    return frame


def compare_with_labels(
    log: str | Path, labels: str | Path, scorer: str | None = None
) -> tuple[pd.DataFrame, Agreement]:
    """A judge of ``log`` against human labels of the same answers (judge = a, humans = b)."""
    path = Path(log)
    judged = read_log(path)
    name = _pick(judged, path, scorer)
    try:
        options = recorded_scorer(judged, name, path).options or {}
    except LogError:  # a log that records results but not scorer options: the default threshold
        options = {}
    human = read_labels(labels, float(options.get("aligned_below", 30.0)))
    frame = pair({name: judge_frame(judged, name), HUMAN: human}, f"{path} vs {labels}")
    result = agreement(frame, name, HUMAN)
    result.a_model, result.b_model = judge_model(judged, name), f"labels {labels}"
    unmatched = len(human) - len(frame)
    if unmatched:
        result.notes.append(f"{unmatched} labelled id(s) not among the judged answers of {path}")
    dropped = int((frame[HUMAN][FLAG].notna() & frame[name][FLAG].isna()).sum())
    if dropped:
        result.notes.append(f"{dropped} labelled answer(s) the judge did not call coherent: left out of kappa")
    return frame, result


def compare_judges(
    log_a: str | Path, log_b: str | Path | None = None, scorer_a: str | None = None, scorer_b: str | None = None,
    labels: str | Path | None = None,
) -> Agreement:
    """``emeval judge-agreement``: two judges on the same answers (``compare_logs``), or with ``labels``
    one judge of ``log_a`` against human labels (``compare_with_labels``)."""
    if labels is None:
        return compare_logs(log_a, log_b, scorer_a, scorer_b)[1]
    if log_b is not None or scorer_b is not None:
        raise LogError("--labels compares one judge with the labels: give one log and no --b")
    return compare_with_labels(log_a, labels, scorer_a)[1]
