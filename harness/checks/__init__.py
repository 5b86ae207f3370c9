"""The individual checks of ``esr check``: each returns :class:`CheckResult` items.

Two kinds:

* static checks (naming, single-file convention) read files and never import the team's
  code; they run in the calling process;
* model checks (build, checkpoint, output, lazy fusion, determinism, deploy, input range,
  operators, estimate, requirements) import and run the team's code. They run together
  in ONE subprocess (``python -m harness.checks JOB.json RESULTS.json``) with CUDA hidden
  (``CUDA_VISIBLE_DEVICES=""``), which writes its results after every check, so a
  submission that crashes the interpreter still yields a checklist up to the crash and a
  failed line naming the check it died in.

Statuses: ``pass``, ``warn``, ``fail`` (makes ``esr check`` exit non-zero) and ``skip``
(a check that could not apply, with the reason).

Families: ``static`` (no team code), ``process`` (parent side), and in the subprocess
``session`` running ``loading``, ``deploy``, ``probe``, ``estimate`` and ``baseline``.
"""
