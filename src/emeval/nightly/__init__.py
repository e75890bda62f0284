"""Nightly runs: evals over model groups with Inspect's eval_set, a SQLite history, regression flags, trends.

Modules: ``config`` (the YAML schema), ``run`` (eval sets per night), ``history`` (the SQLite store),
``regression`` (the rule), ``trends`` (plots and report sections), ``command`` (the CLI body).
Kept import-light: ``emeval`` CLI start-up must not pay for matplotlib or Inspect.
"""
