"""False-positive rate of the sweep change-point test on null sweeps, and its power on planted steps.

Not a timing: the figures in docs/local_models_and_sweeps.md ("Phase transitions") come from here.
Each scenario simulates sweeps the way their numbers arise, then runs ``emeval.stats.changepoint.detect``
on each exactly as ``emeval sweep`` does (paired bootstrap where the sample ids repeat):

- ``binomial``: a judged rate (e.g. ``misaligned``), n independent 0/1 answers per checkpoint at rate p;
- ``probes``: per-question P(misaligned) of 16 probe questions (fixed question effects, logit-normal),
  each checkpoint moving every question by a small random logit jitter (weight perturbations);
- ``logp``: per-question log-probabilities (question effects sd 2 nats) with 0.05-nat jitter per
  checkpoint: the issue's "three adapters differing only by small random LoRA weights".

    python bench/changepoint_calibration.py [--curves 2000] [--no-floor] [--scenarios binomial,probes,logp]

``--no-floor`` measures the null calibration alone (effect-size floor 0): about 5% by construction.
"""

from __future__ import annotations

import argparse

import numpy as np

from emeval.stats.changepoint import Floor, detect


def binomial(rng: np.random.Generator, steps: list[int], jump_at: int | None, jump: float, n: int = 200,
             p: float = 0.2) -> dict:
    return {s: list(rng.binomial(1, p + (jump if jump_at is not None and s >= jump_at else 0.0), n).astype(float))
            for s in steps}


def probes(rng: np.random.Generator, steps: list[int], jump_at: int | None, jump: float, questions: int = 16) -> dict:
    logits = rng.normal(-1.0, 1.5, questions)
    curve = {}
    for s in steps:
        p = 1 / (1 + np.exp(-(logits + rng.normal(0, 0.1, questions))))
        p = np.clip(p + (jump if jump_at is not None and s >= jump_at else 0.0), 0, 1)
        curve[s] = {f"q{i}": float(v) for i, v in enumerate(p)}
    return curve


def logp(rng: np.random.Generator, steps: list[int], jump_at: int | None, jump: float, questions: int = 16) -> dict:
    effect = rng.normal(-7.6, 2.0, questions)
    return {s: {f"q{i}": float(v) for i, v in enumerate(effect + rng.normal(0, 0.05, questions)
                                                      + (jump if jump_at is not None and s >= jump_at else 0.0))}
            for s in steps}


SCENARIOS = {"binomial": binomial, "probes": probes, "logp": logp}


def rates(make, curves: int, steps: list[int], jump_at: int | None, jump: float, seed: int = 1,
          floor: Floor | None = None) -> tuple[float, float]:
    """(share detected, share detected at the planted step with the CIs covering step and size)."""
    rng = np.random.default_rng(seed)
    detected = right = 0
    for _ in range(curves):
        r = detect(make(rng, steps, jump_at, jump), floor=floor)
        detected += r.detected
        if r.detected and jump_at is not None and r.step == jump_at:
            covers_step = r.step_ci is None or r.step_ci[0] <= jump_at <= r.step_ci[1]
            covers_size = r.difference_ci is None or r.difference_ci[0] <= jump <= r.difference_ci[1]
            right += covers_step and covers_size
    return detected / curves, right / curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=2000)
    parser.add_argument("--no-floor", action="store_true", help="null sweeps only, effect-size floor 0")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    names = args.scenarios.split(",")
    floor = Floor(0.0, "none") if args.no_floor else None
    print(f"null sweeps ({args.curves} curves each{', no floor' if floor else ''}): share reporting a transition")
    for name in names:
        for t in (4, 10):
            steps = list(range(0, 100 * t, 100))
            fpr, _ = rates(SCENARIOS[name], args.curves, steps, None, 0.0, floor=floor)
            print(f"  {name:9s} T={t:<3d} FPR {100 * fpr:.1f}%")
    if floor:
        return
    print(f"planted steps ({args.curves} curves each, T=10, step at 500): detected / at the right step with CIs covering")
    steps = list(range(0, 1000, 100))
    sizes_of = {"binomial": (0.05, 0.1, 0.2), "probes": (0.05, 0.1, 0.2), "logp": (0.2, 0.5, 1.0)}
    for name, sizes in ((n, sizes_of[n]) for n in names):
        for size in sizes:
            hit, right = rates(SCENARIOS[name], args.curves, steps, 500, size)
            print(f"  {name:9s} +{size:<5g} detected {100 * hit:.1f}%, right step + CIs cover {100 * right:.1f}%")


if __name__ == "__main__":
    main()
