"""Challenge rules as data, ranking and rendering. Imports no torch.

- ``tracks``: parse and validate track files (``leaderboard/tracks/*.toml``, schema ``esr-track/1``).
- ``inputs``: records from ``esr run`` or a CSV of published numbers -> one DataFrame.
- ``rank``: pure functions: derived metrics, baseline, gates, adjudications, per-metric ranks, rules, ties.
- ``render``: console (rich), Markdown, CSV, JSON, LaTeX; ``plot``: PSNR against runtime (PNG).
- ``cli``: ``esr rank`` and ``esr report``.

See ``docs/leaderboard.md``.
"""
