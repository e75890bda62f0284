"""The library side of each eval: question sets, answer formats, TruthfulQA, StrongREJECT, probes, MACHIAVELLI."""
