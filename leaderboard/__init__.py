"""Challenge rules as data, ranking and rendering. Imports neither torch nor harness.

- ``tracks``: parse and validate track files (``leaderboard/tracks/*.toml``, schema ``esr-track/1``).
- ``inputs``: records from ``esr run`` or a CSV under the input contract -> one DataFrame.
- ``context``: what each row was measured on; whether a track's gates and published figures apply.
- ``compute``: a track's metrics from the inputs (rows, or bootstrap resamples x rows).
- ``rank``: pure functions: baseline, gates, adjudications, per-metric ranks, rules, tie policies.
- ``stability``: paired bootstrap of runtime-based ranks (statistical ties).
- ``render``: console (rich), Markdown, CSV, JSON, LaTeX; ``plot``: quality against runtime (PNG).
- ``cli``: ``esr rank`` and ``esr report``; ``fsio``: atomic writes.

See ``docs/leaderboard.md``.
"""
