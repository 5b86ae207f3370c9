"""Replay a published challenge folder against an oracle (``esr replay FOLDER``).

An organizer's folder (``test_demo.py``, ``models/``, ``model_zoo/``, ``utils/model_summary.py``)
is ingested with the harness's own tools and our figures are printed beside an oracle:

1. the folder is copied to ``OUT/challenge`` (the zoo is read in place; the source folder is never
   written), and ``test_demo.py``'s chain is converted into sidecar cards there
   (:func:`harness.submissions.cards_convert.convert`, tracing where static reading cannot decide);
2. ``esr run --no-quality`` measures every entry of ``OUT/challenge/models`` into ``OUT/run``
   (complexity only: the figures of the published tables);
3. the oracle is either a published table (``--published CSV``, joined by team name through the
   card's ``team`` or the branch comment kept in its notes) or the organizers' own counters run on
   the same built model in a confined child (:mod:`harness.running.replay_oracle`);
4. every row gets one line explaining a difference (``ours wrong``, ``oracle artefact``,
   ``submission defect``), and the table is written as ``OUT/replay.md`` and ``OUT/replay.csv``.

Figures compare at the published table's printed precision: params in M to 3 decimals, FLOPs
in G to 2, activations in M to 2, conv as an integer. Against the organizers' counters they
compare exactly. A run by hand, not part of CI (it measures a whole challenge).
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FIGURES = ("params", "flops", "acts", "conv")


@dataclass
class Row:
    team: str
    entry: str = ""
    model_id: int | None = None
    status: str = ""
    ours: dict = field(default_factory=dict)     # figure -> number (raw units)
    oracle: dict = field(default_factory=dict)   # figure -> number or printed string
    match: dict = field(default_factory=dict)    # figure -> bool
    why: str = ""
    counter: dict = field(default_factory=dict)  # the organizers' counters on the built model (with a published table)
    corrected: int | None = None                 # our corrected FLOPs where the official convention misses MACs
    artefacts: str = ""                          # what the official convention misses (ops and MACs)

    @property
    def all_match(self) -> bool:
        return bool(self.match) and all(self.match.get(f) for f in FIGURES)


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t != "team"]


def join_team(published: str, cards: dict[str, str]) -> str | None:
    """The entry whose team text (card ``team`` or kept branch comment) names the published team."""
    target = norm(published)
    exact = [e for e, t in cards.items() if norm(t) == target or norm(t) == target + "team"
             or norm(t) + "team" == target]
    if len(exact) == 1:
        return exact[0]
    toks = tokens(published)
    loose = [e for e, t in cards.items() if toks and all(tok in norm(t) for tok in toks)]
    if len(loose) == 1:
        return loose[0]
    return None


def team_text(card: dict) -> str:
    if card.get("team"):
        return card["team"]
    m = re.search(r"test_demo comment: ([^;]+)", card.get("notes", ""))
    return m.group(1) if m else ""


def fmt(value, figure: str) -> str:
    if value is None:
        return "-"
    if figure == "params":
        return f"{value / 1e6:.3f}"
    if figure == "flops":
        return f"{value / 1e9:.2f}"
    if figure == "acts":
        return f"{value / 1e6:.2f}"
    return f"{int(value)}"


def copy_challenge(folder: Path, dest: Path) -> Path:
    """Copy everything but the zoo (read in place) and caches; never write into ``folder``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("model_zoo", "__pycache__", "*.pyc", "results*"))
    if (folder / "model_zoo").is_dir():  # select_model (traced) loads model_zoo/... relative to the folder
        (dest / "model_zoo").symlink_to(folder / "model_zoo", target_is_directory=True)
    return dest


def record_figures(rec: dict, flops_key: str) -> dict:
    cx = rec.get("complexity") or {}
    metrics = rec.get("metrics") or {}
    return {"params": metrics.get("params", cx.get("params")), "flops": cx.get(flops_key),
            "acts": cx.get("activations"), "conv": cx.get("conv")}


def note_artefacts(row: Row, cx: dict, flops_key: str) -> None:
    """Keep our corrected FLOPs where the official convention misses MACs, and what it misses."""
    corrected = cx.get(f"{flops_key}_corrected")
    if corrected is None or corrected == row.ours.get("flops"):
        return
    row.corrected = corrected
    row.artefacts = ", ".join(
        f"{a.get('op')} x{a.get('calls')} hides "
        f"{'?' if a.get('hidden_macs') is None else fmt(a['hidden_macs'], 'flops') + ' G'}"
        for a in cx.get("artefacts") or []) or "see the record's flags"


def explain_failure(status: str, error: str) -> str:
    error = (error or "").strip()
    m = re.search(r"No module named '([^']+)'", error)
    if m and m.group(1).split(".")[0] == "models":
        return f"ours wrong: {m.group(1)} did not resolve inside the challenge's models/ ({status})"
    if m:
        return f"submission defect: needs package {m.group(1).split('.')[0]!r}, not installed here ({status})"
    if status == "load_error":
        return f"submission defect: the checkpoint does not fit its model under strict loading: {error[:160]}"
    if "CUDA" in error or "cuda" in error:
        return f"submission defect: CUDA-only code on a CPU ({status}): {error[:140]}"
    return f"{status}: {error[:170]}"


def run_oracle(python: str, challenge: Path, record: dict, entry: str, zoo: Path, timeout: float) -> dict:
    from harness.core.sandbox import run_confined

    card = record.get("card") or {}
    file = card.get("file") or (record.get("submission") or {}).get("path")  # failed records keep the submission
    if not file:
        return {"error": "the record names no model file"}
    with tempfile.TemporaryDirectory(prefix="esr-oracle-") as tmp:
        dest = Path(tmp) / "oracle.json"
        cmd = [python, "-m", "harness.running.replay_oracle", str(challenge), file, entry, str(zoo), str(dest)]
        done = run_confined(cmd, scratch=Path(tmp), timeout_s=timeout, mode="auto", cwd=str(challenge))
        if dest.is_file():
            return json.loads(dest.read_text())
        if done.timed_out:
            return {"error": f"the organizers' counters did not finish within {timeout:g} s"}
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return {"error": f"the oracle process died (exit {done.returncode}): {tail[0][:160]}"}


def compare_oracle(row: Row, orc: dict, flops_key: str) -> None:
    """Our figures against the organizers' counters on the same built model and the same input.

    ``row.oracle`` holds what their counters give on their own input (what they would publish);
    a row matches when every figure equals theirs on the harness's input (``same_input``). Where
    the two inputs give different counts, the model's work depends on the input values and the
    published figure is an artefact of their input, said in ``why``.
    """
    names = {"params": "params", "flops": flops_key, "acts": "activations", "conv": "conv"}
    same = orc.get("same_input") or {}
    if same.get("error") or not same:  # their counter cannot take our input: compare on theirs
        same = {k: v for k, v in orc.items() if k not in ("same_input", "same_input_again")}
    same = dict(same, params=orc.get("params"))
    row.oracle = {f: orc.get(k) for f, k in names.items()}
    on_same = {f: same.get(k) for f, k in names.items()}
    row.match = {f: row.ours.get(f) is not None and row.ours.get(f) == on_same.get(f) for f in FIGURES}
    moved = [f for f in FIGURES if on_same.get(f) is not None and on_same.get(f) != row.oracle.get(f)]
    data_note = ("oracle artefact: the model's work depends on the input values; on their own input "
                 "(model_summary: an uninitialised FloatTensor; fvcore: torch.rand) their counters give "
                 + ", ".join(f"{f} {row.oracle.get(f)}" for f in moved)
                 + "; on the harness's input they give ours") if moved else ""
    weights = f"; {orc['weights']}" if orc.get("weights") else ""
    if row.all_match:
        row.why = "; ".join(filter(None, ["equal to the organizers' counters on the same input", data_note])) + weights
        return
    diffs = [f for f in FIGURES if not row.match[f]]
    again = orc.get("same_input_again") or {}
    random = [f for f in diffs if names[f] in again and again[names[f]] != same.get(names[f])]
    if random:
        row.why = ("submission property: the model draws random numbers in its forward, so its work changes from one "
                   "forward to the next on the same input (the organizers' counters, twice: "
                   + ", ".join(f"{f} {same.get(names[f])} then {again[names[f]]}" for f in random)
                   + f"; ours {', '.join(f'{f} {row.ours.get(f)}' for f in random)} is one such forward)") + weights
        return
    errs = [same.get(f"{k}_error") for k in ("activations", "macs_legacy", "macs") if same.get(f"{k}_error")]
    unsupported = same.get("fvcore_unsupported") or {}
    if errs and all(on_same.get(f) is None for f in diffs):
        row.why = f"oracle artefact: the organizers' counter fails on this model ({errs[0][:120]})"
    elif diffs == ["flops"] and unsupported:
        row.why = f"oracle artefact?: fvcore skips {', '.join(sorted(unsupported))}; ours differs by " \
                  f"{(row.ours['flops'] or 0) - (on_same['flops'] or 0):+d} MACs"
    else:
        row.why = "ours wrong: " + ", ".join(f"{f} ours {row.ours.get(f)} vs {on_same.get(f)}" for f in diffs)
    row.why += weights


def compare_published(row: Row, pub: dict) -> None:
    row.oracle = {"params": pub.get("params_m", ""), "flops": pub.get("flops_g", ""), "acts": pub.get("acts_m", ""),
                  "conv": pub.get("conv", "")}
    row.match = {f: fmt(row.ours.get(f), f) == str(row.oracle[f]).strip() for f in FIGURES}
    if row.all_match:
        row.why = "matches the published table"
        return
    parts = []
    for f in FIGURES:
        if row.match[f]:
            continue
        text = f"{f} ours {fmt(row.ours.get(f), f)} vs published {row.oracle[f]}"
        if row.counter.get(f) is not None:
            if fmt(row.counter[f], f) == fmt(row.ours.get(f), f):
                text += " (the organizers' counter on this code agrees with ours: published artefact or other code)"
            else:
                text += f" (the organizers' counter gives {fmt(row.counter[f], f)}: ours wrong)"
        parts.append(text)
    row.why = "; ".join(parts)


def replay(folder: str | Path, out: str | Path, *, published: str | Path | None = None, trace: bool = True,
           oracle: bool | None = None, python: str = sys.executable, timeout: float = 900.0,
           run_args: list[str] | None = None, log=print) -> dict:
    """Replay ``folder`` into ``out``; returns {"rows": [Row], "branches": [...], "summary": str}."""
    from harness.submissions.cards_convert import convert, write_cards

    folder, out = Path(folder).resolve(), Path(out).resolve()
    if not (folder / "test_demo.py").is_file():
        raise FileNotFoundError(f"{folder}: no test_demo.py (not a challenge folder)")
    out.mkdir(parents=True, exist_ok=True)
    challenge = copy_challenge(folder, out / "challenge")
    zoo = folder / "model_zoo"
    log(f"converting {folder / 'test_demo.py'} (trace={'on' if trace else 'off'})")
    conv = convert(challenge / "test_demo.py", trace=trace, zoo=zoo)
    write_cards(conv, challenge / "models", force=True)
    cards = {c["name"]: c for cs in conv.cards.values() for c in cs}
    ids = {r.entry: r.model_id for r in conv.branches if r.entry}
    log(f"{len(cards)} entries converted, {len(conv.skipped)} branches not; running esr run over them")
    cmd = [python, "-m", "harness.cli", "run", "--models", str(challenge / "models"), "--zoo", str(zoo),
           "--out", str(out / "run"), "--no-quality", "--quiet", "--force"] \
        + list(run_args or [])
    subprocess.run(cmd, cwd=str(out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = {}
    for path in sorted((out / "run" / "records").glob("*.json")):
        rec = json.loads(path.read_text())
        records[rec.get("entry", path.stem)] = rec
    use_oracle = (published is None) if oracle is None else oracle
    flops_key = "macs_legacy" if published else "macs"
    rows = []
    for name, card in sorted(cards.items(), key=lambda kv: (ids.get(kv[0]) is None, ids.get(kv[0]) or 0)):
        rec = records.get(name)
        row = Row(team=team_text(card), entry=name, model_id=ids.get(name))
        if rec is None:
            row.status, row.why = "missing", "ours wrong: esr run wrote no record for this entry (not discovered)"
        else:
            row.status = rec.get("status", "?")
            row.ours = record_figures(rec, flops_key)
            note_artefacts(row, rec.get("complexity") or {}, flops_key)
            if row.status not in ("ok", "untrained"):
                row.why = explain_failure(row.status, rec.get("error") or "")
        if use_oracle and rec is not None and row.status in ("ok", "untrained", "load_error") and row.ours.get("params"):
            orc = run_oracle(python, challenge, rec, name, zoo, timeout)
            defect = row.why
            if orc.get("error"):
                row.why = f"oracle failed: {orc['error'][:160]}"
            elif published:
                row.counter = {"params": orc.get("params"), "flops": orc.get(flops_key),
                               "acts": orc.get("activations"), "conv": orc.get("conv")}
            else:
                compare_oracle(row, orc, flops_key)
            if defect:  # a load_error: the defect first, then what the counters say of the built model
                row.why = f"{defect}; complexity: {row.why}"
        if row.status == "untrained" and row.why:
            row.why += "; submission defect: checkpoint absent from the zoo"
        rows.append(row)
    if published:
        rows = _join_published(rows, Path(published))
    for row in rows:
        if row.corrected is not None:
            row.why += (f"; oracle artefact: the official convention misses MACs ({row.artefacts}); "
                        f"corrected {fmt(row.corrected, 'flops')} G")
    write_tables(rows, conv, out, against="published table" if published else "organizers' counters")
    return {"rows": rows, "branches": conv.branches, "out": str(out)}


def _join_published(rows: list[Row], csv_path: Path) -> list[Row]:
    with open(csv_path, newline="") as fh:
        pub = list(csv.DictReader(fh))
    by_entry = {r.entry: r for r in rows}
    teams = {r.entry: r.team for r in rows if r.team}
    joined = []
    for p in pub:
        entry = join_team(p["team"], teams)
        if entry is None:
            joined.append(Row(team=p["team"], status="no code", why="no submission with code in the folder names this team",
                              oracle={"params": p.get("params_m"), "flops": p.get("flops_g"),
                                      "acts": p.get("acts_m"), "conv": p.get("conv")}))
            continue
        row = by_entry.pop(entry)
        row.team = p["team"]
        if row.status in ("ok", "untrained") and row.ours:
            compare_published(row, p)
        elif row.status not in ("ok", "untrained"):
            row.oracle = {"params": p.get("params_m"), "flops": p.get("flops_g"), "acts": p.get("acts_m"),
                          "conv": p.get("conv")}
            if row.status == "untrained":
                row.why += "; checkpoint absent (complexity does not depend on it)"
        joined.append(row)
    for row in by_entry.values():  # converted but not in the table
        row.why = (row.why + "; " if row.why else "") + "not in the published table"
        joined.append(row)
    return joined


def write_tables(rows: list[Row], conv, out: Path, *, against: str) -> None:
    header = ["team", "entry", "model_id", "status"] + [f"{f}_ours" for f in FIGURES] + \
             [f"{f}_oracle" for f in FIGURES] + ["flops_corrected", "match", "why"]
    with open(out / "replay.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r.team, r.entry, "" if r.model_id is None else r.model_id, r.status]
                       + [fmt(r.ours.get(f), f) if r.ours.get(f) is not None else "" for f in FIGURES]
                       + [_oracle_text(r, f) for f in FIGURES]
                       + [fmt(r.corrected, "flops") if r.corrected is not None else ""]
                       + ["yes" if r.all_match else "no", r.why])
    lines = [f"# Replay of {conv.source} against the {against}", "",
             "| team | entry | status | params M | FLOPs G | acts M | conv | match | why |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{fmt(r.ours.get(f), f) if r.ours.get(f) is not None else '-'} / {_oracle_text(r, f) or '-'}"
                 for f in FIGURES]
        lines.append(f"| {r.team} | {r.entry} | {r.status} | " + " | ".join(cells)
                     + f" | {'yes' if r.all_match else 'no'} | {r.why} |")
    matched = sum(r.all_match for r in rows)
    with_code = sum(1 for r in rows if r.status != "no code")
    lines += ["", f"{matched} of {with_code} rows with code match on all four figures (ours / oracle).", "",
              "## Converter, per branch", "", "| model_id | line | how | entry or reason |", "|---|---|---|---|"]
    for b in conv.branches:
        lines.append(f"| {b.model_id} | {b.line} | {b.how} | {b.entry or b.reason} |")
    (out / "replay.md").write_text("\n".join(lines) + "\n")


def _oracle_text(r: Row, f: str) -> str:
    v = r.oracle.get(f)
    if v is None or v == "":
        return ""
    return v if isinstance(v, str) else fmt(v, f)
