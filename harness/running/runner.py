"""Orchestrate a run: data decoded once, one isolated subprocess per entry, resumable.

The parent process never imports a team's model file: the catalog is read by a
subprocess (``python -m harness.submissions.discovery``), and each entry is measured by another
(``python -m harness.running.worker``). Only this process writes records, caches and run.json.

Records are written atomically and their content hashes kept in run.json (announced before
the record is written, confirmed after), so a record edited by hand is detected. A rerun
keeps a record only when it is complete, its key (model source, card, checkpoint, data,
settings, harness version) is unchanged and its content matches run.json; a failure caused
by a limit (timeout, memory) is redone when that limit changes, every failure with
``retry_failed``, everything with ``force``. Each redo says why.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.submissions.checkpoint import LoadError, resolve_in_zoo, sha256_file
from harness.running.records import (SCHEMA, atomic_write_json, atomic_write_text, error_record, file_sha256, is_complete,
                                     provenance, read_json, record_key, record_text, redo_reason, source_hash,
                                     text_sha256)
from harness.running.errors import RunError
from harness.running.hooks import kill_point
from harness.running.progress import progress_bar
from harness.running.settings import RunSettings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunConfig:
    out: Path
    models: Path = REPO / "models"
    zoo: Path = REPO / "model_zoo"
    data: str | None = None          # valid split: None/"builtin" or a path spec
    test: str | None = None          # optional test split
    scale: int = 4
    entries: list[str] | None = None  # None: every entry at the run's scale (heavy ones only with all_entries)
    all_entries: bool = False
    force: bool = False
    retry_failed: bool = False       # redo every failed entry
    strict: bool = False
    backend: str = "local"
    address: str | None = None
    tracks: list[str] = field(default_factory=list)
    settings: RunSettings = field(default_factory=RunSettings)
    extra: dict = field(default_factory=dict)  # backend options (recorded)
    quality: bool = True             # False: complexity only, no data, no quality or timing (esr run --no-quality)


@dataclass
class Outcome:
    records: list[dict]
    skipped: list[str]     # entries not at the run's scale
    reused: list[str]      # complete records kept from an earlier invocation
    measured: list[str]
    skipped_scales: dict = field(default_factory=dict)  # entry -> the scale its card declares
    left_out: dict = field(default_factory=dict)        # entry -> why the default job left it out
    helper_notes: list = field(default_factory=list)    # files beside the models that are not entries
    redone: dict = field(default_factory=dict)   # entry -> why its earlier record was not kept
    notes: list = field(default_factory=list)    # data caches rebuilt and the like

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] not in ("ok", "untrained")]


def read_catalog(models: Path, timeout_s: float = 600, *, sandbox: str = "auto", memory_limit_mib: int | None = None) -> dict:
    """Discover entries in a confined subprocess, each file in its own fork with ``timeout_s``.

    A team file cannot take the parent down, write anything, or stall discovery past its own
    time limit: it becomes a problem record for that file only.
    """
    from harness.core.sandbox import SandboxUnavailable, run_confined

    if not Path(models).is_dir():
        raise RunError(f"models folder {models} does not exist; give --models a folder of model files")
    files = [p for p in Path(models).glob("*.py") if not p.name.startswith("_")]
    overall = timeout_s * max(len(files), 1) + 120  # every file may use its own limit, plus the imports
    with tempfile.TemporaryDirectory(prefix="esr-cat-") as tmp:
        out = Path(tmp) / "catalog.json"
        cmd = [sys.executable, "-m", "harness.submissions.discovery", str(Path(models).resolve()), str(out), str(timeout_s)]
        if kill_point("discovery", probe=True):  # test hook: die while the discovery subprocess runs
            import threading

            threading.Timer(0.2, kill_point, ("discovery",)).start()
        try:
            proc = run_confined(cmd, scratch=tmp, timeout_s=overall, mode=sandbox, memory_limit_mib=memory_limit_mib)
        except SandboxUnavailable as exc:
            raise RunError(str(exc)) from None
        result = read_json(out)
    if result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        how = "timed out" if proc.timed_out else f"exit {proc.returncode}"
        raise RunError(f"discovery of {models} crashed ({how}): {' | '.join(tail)}")
    if "error" in result:
        raise RunError(result["error"])
    result["isolation"] = proc.isolation
    return checked_catalog(result)


def checked_catalog(result: dict) -> dict:
    """Re-check what the discovery process (which ran team code) reported: names and checkpoints.

    A card that fails here was forged after discovery's own checks; it becomes a problem.
    """
    from harness.core.card import CardError, check_checkpoint_name, check_name

    entries, seen = {}, set()
    for name, card in result.get("entries", {}).items():
        try:
            check_name(name)
            if card.get("name") != name or name.casefold() in seen:
                raise CardError(f"field 'name' {name!r} does not match its card or repeats another name")
            if card.get("checkpoint") is not None:
                check_checkpoint_name(card["checkpoint"], name)
        except CardError as exc:
            file = str(card.get("file") or "")
            result.setdefault("problems", []).append(
                {"file": file, "name": Path(file).stem or "unnamed", "status": "card_error", "error": f"bad card: {exc}"})
            continue
        seen.add(name.casefold())
        entries[name] = card
    result["entries"] = entries
    return result


def check_sandbox(settings: RunSettings) -> None:
    """``--sandbox required`` on a machine that cannot confine: refused before anything runs."""
    from harness.core.sandbox import SandboxUnavailable, require

    try:
        require(settings.sandbox, settings.memory_limit_mib)
    except SandboxUnavailable as exc:
        raise RunError(str(exc)) from None


def select_entries(catalog: dict, wanted: list[str] | None, scale: int) -> tuple[list[str], list[str]]:
    """Names to run and names skipped for their scale; unknown names raise with the list."""
    import difflib

    names = sorted(catalog["entries"])
    problems = sorted(p["name"] for p in catalog["problems"])
    if wanted:
        unknown = [w for w in wanted if w not in names and w not in problems]
        if unknown:
            hints = []
            for w in unknown:
                close = difflib.get_close_matches(w, names, n=3)
                hints.append(f"{w!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise RunError(f"unknown entries {', '.join(hints)}; known entries: {', '.join(names)}")
        chosen = [w for w in wanted if w in names]
    else:
        chosen = names
    run = [n for n in chosen if catalog["entries"][n]["scale"] == scale]
    skipped = [n for n in chosen if catalog["entries"][n]["scale"] != scale]
    return run, skipped


def prepare_data(config: RunConfig, notes: list | None = None) -> dict:
    """Load, validate and cache every split once; {split: (cache path, description)}.

    The data is decoded from its source on every run; an existing cache is kept only when its
    arrays hash to the decoded data (``content_sha256``, also handed to every job so that each
    read is checked), else it is rebuilt and ``notes`` says so.
    """
    from harness.data.splits import DataError, check_sizes, describe, ensure_cache, load_split
    from harness.measure.metrics import SSIM_WINDOW

    specs = {"valid": config.data}
    if config.test:
        specs["test"] = config.test
    prepared = {}
    for split, spec in specs.items():
        try:
            data = load_split(spec, scale=config.scale, split=split)
            check_sizes(data, crop_border=config.settings.crop_for(config.scale), window=SSIM_WINDOW)
        except DataError as exc:
            raise RunError(f"data ({split}): {exc}") from exc
        info = describe(data)
        cache = Path(config.out) / "cache" / f"{split}-x{config.scale}-{info['file_hash'][:16]}.npz"
        info["content_sha256"], note = ensure_cache(data, cache)
        if note and notes is not None:
            notes.append(f"data ({split}): {note}")
        info["spec"] = "builtin" if spec is None else str(spec)
        prepared[split] = (str(cache), info)
    return prepared


def checkpoint_hash(card: dict, zoo: Path) -> str | None:
    name = card.get("checkpoint")
    if not name:
        return None
    try:
        path = resolve_in_zoo(name, zoo)
    except LoadError:
        return "outside-zoo"  # the worker refuses it with a load_error naming the field
    return sha256_file(path) if path.is_file() else "absent"


def key_card(card: dict, models: Path) -> dict:
    """The card as it enters the key: its file relative to the models folder, resolved first."""
    card = dict(card)
    if card.get("file"):
        try:
            card["file"] = Path(card["file"]).resolve().relative_to(Path(models).resolve()).as_posix()
        except ValueError:
            card["file"] = str(Path(card["file"]).resolve())
    return card


def build_jobs(config: RunConfig, catalog: dict, names: list[str], data: dict) -> list[dict]:
    settings = config.settings.key_dict()
    if config.extra.get("exclusive_timing"):  # timings taken alone on a machine are another measurement
        settings["exclusive_timing"] = True
    data_hashes = {split: [info["file_hash"], info["content_sha256"]] for split, (_, info) in data.items()}
    jobs = []
    for name in names:
        card = catalog["entries"][name]
        ckpt = checkpoint_hash(card, config.zoo)
        src = source_hash(card["file"], config.models)
        jobs.append({
            "entry": name,
            "file": card["file"],
            "card": card,
            "zoo": str(config.zoo),
            "splits": {split: cache for split, (cache, _) in data.items()},
            "data": {split: {k: v for k, v in info.items() if k != "spec"} for split, (_, info) in data.items()},
            "data_specs": {split: info["spec"] for split, (_, info) in data.items()},
            "settings": config.settings.to_dict(),
            "source_hash": src,
            "key": record_key(key_card(card, config.models), ckpt, data_hashes, settings, source_hash=src),
            "record": str(Path(config.out) / "records" / f"{name}.json"),
        })
    return jobs


def problem_records(catalog: dict, wanted: list[str] | None) -> list[dict]:
    return [
        error_record(p["name"], p["status"], p["error"], file=p["file"], provenance=provenance())
        for p in catalog["problems"]
        if not wanted or p["name"] in wanted
    ]


def run(config: RunConfig, *, console=None, progress: bool = True) -> Outcome:
    """Measure every selected entry and write the run folder; returns the records.

    The run folder is locked for the whole run (``harness.running.locks.RunLock``): a second
    driver on the same folder fails with the holder's pid and host instead of writing
    the same records.
    """
    from harness.running.locks import LockHeld, RunLock

    try:
        with RunLock(config.out):
            return _run_locked(config, console=console, progress=progress)
    except LockHeld as exc:
        raise RunError(str(exc)) from None


class RecordBook:
    """Writes records and keeps their content hashes in run.json (``records``).

    Order for one record: run.json announces its hash (``pending``), the record is written,
    run.json confirms it (``sha256``). Killed anywhere in between, the next run accepts the
    record file when it matches either hash, so nothing finished is lost; any other content
    is a record changed by hand, reported and re-measured.
    """

    def __init__(self, out: Path, run_doc: dict):
        self.out = Path(out)
        self.run_doc = run_doc
        self.hashes = run_doc.setdefault("records", {})
        self.texts = {}  # entry -> the text this run wrote or verified

    def save_run(self) -> None:
        self.run_doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(self.out / "run.json", self.run_doc)

    def path(self, entry: str) -> Path:
        return self.out / "records" / f"{entry}.json"

    def write(self, record: dict) -> None:
        entry = record["entry"]
        text = record_text(record)
        digest = text_sha256(text)
        slot = self.hashes.setdefault(entry, {})
        slot["pending"] = digest
        self.save_run()
        kill_point("run_json_pending", entry)
        atomic_write_text(self.path(entry), text)
        kill_point("record_written", entry)
        self.hashes[entry] = {"sha256": digest}
        self.texts[entry] = text
        self.save_run()

    def keep(self, entry: str) -> None:
        """Remember a verified record kept from an earlier run (restored if changed meanwhile)."""
        self.texts[entry] = self.path(entry).read_text()

    def changed(self) -> list[str]:
        """Records of this run whose files no longer hold what the harness wrote."""
        return [entry for entry, text in self.texts.items() if file_sha256(self.path(entry)) != text_sha256(text)]

    def restore(self) -> list[str]:
        """Rewrite every record of this run whose file changed since (a worker cannot, when confined)."""
        notes = []
        for entry, text in self.texts.items():
            if file_sha256(self.path(entry)) != text_sha256(text):
                atomic_write_text(self.path(entry), text)
                notes.append(f"record {entry}.json was changed during the run; restored what the harness wrote")
        return notes

    def verify(self, entry: str) -> str | None:
        """None when the record file is the one this harness wrote, else why not."""
        digest = file_sha256(self.path(entry))
        if digest is None:
            return None
        slot = self.hashes.get(entry) or {}
        if digest in (slot.get("sha256"), slot.get("pending")):
            # pending and written: killed before run.json confirmed it; pending and not written:
            # killed before the write, the earlier record stands
            self.hashes[entry] = {"sha256": digest}
            return None
        if not slot:
            return "record not listed in run.json (written by another program or an older harness): re-measured"
        return "record content does not match its hash in run.json (edited by hand?): re-measured"


class RunFolderGuard:
    """After each entry: were records or data caches of the run changed while it ran?

    A confined worker cannot write them; an unconfined one can. Changed records are restored,
    changed caches rebuilt from the source, and the entry that just ran fails with the list
    (with concurrent entries, as on Ray, the one reported is the one that finished first after
    the change). Caches are compared by size, mtime and inode here, and by content hash on every
    read by the parent, so a change that restores the mtime is still caught (unattributed).
    """

    def __init__(self, book: RecordBook, data: dict, config: RunConfig):
        self.book, self.data, self.config = book, data, config
        self.caches = [Path(c) for c, _ in data.values()]
        self.stats = {p: self._stat(p) for p in self.caches}

    @staticmethod
    def _stat(path: Path):
        try:
            st = path.stat()
            return st.st_size, st.st_mtime_ns, st.st_ino
        except OSError:
            return None

    def check(self, record: dict) -> dict:
        touched = [f"records/{e}.json" for e in self.book.changed() if e != record.get("entry")]
        self.book.restore()
        for path in self.caches:
            now = self._stat(path)
            if now != self.stats.get(path) and self.stats.get(path) is not None:
                touched.append(f"cache/{path.relative_to(Path(self.config.out) / 'cache').as_posix()}")
                self._rebuild()
                break
        self.stats = {p: self._stat(p) for p in self.caches}
        if touched:
            record = dict(record, status="run_error", flags=list(record.get("flags") or []),
                          error=f"{record['entry']}: changed the run folder while it ran: {', '.join(touched)} "
                                "(restored by the harness)")
        return record

    def _rebuild(self) -> None:
        from harness.data.splits import ensure_cache, load_split

        for split, (cache, info) in self.data.items():
            spec = None if info["spec"] == "builtin" else info["spec"]
            ensure_cache(load_split(spec, scale=self.config.scale, split=split), cache)


def _run_locked(config: RunConfig, *, console=None, progress: bool = True) -> Outcome:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_sandbox(config.settings)
    catalog = read_catalog(config.models, config.settings.timeout_s, sandbox=config.settings.sandbox,
                           memory_limit_mib=config.settings.memory_limit_mib)
    names, skipped = select_entries(catalog, config.entries, config.scale)
    left_out = {} if (config.entries or config.all_entries) else heavy_entries(catalog, names)
    names = [n for n in names if n not in left_out]
    notes = []
    data = prepare_data(config, notes) if config.quality else {}
    jobs = build_jobs(config, catalog, names, data)
    (out / "records").mkdir(exist_ok=True)  # exists before the first worker starts: hidden from it
    previous = read_json(out / "run.json") or {}
    book = RecordBook(out, run_document(config, catalog, names, skipped, data))
    if isinstance(previous.get("records"), dict):
        book.hashes.update(previous["records"])
    book.save_run()

    problems, helper_notes = split_helpers(problem_records(catalog, config.entries), Path(config.models))
    for rec in problems:  # discovery's verdict of this run
        book.write(rec)
    reused, todo, redone = [], [], {}
    current = config.settings.to_dict()
    for job in jobs:
        existing = read_json(job["record"])
        reason = None
        if config.force:
            reason = "--force" if existing is not None else None
        elif existing is None:
            reason = None
        elif not isinstance(existing, dict) or existing.get("schema") != SCHEMA:
            found = existing.get("schema") if isinstance(existing, dict) else None
            reason = f"record schema {found!r}, now {SCHEMA!r}: re-measured"
        elif not is_complete(existing, job["key"]):
            reason = ("inputs changed (model source, card, checkpoint, data, settings or harness version): "
                      "re-measured" if is_complete(existing) else "incomplete record: re-measured")
        elif not _has_saved_sr(existing, config.settings):
            reason = "--save-sr: its SR images are not in that folder yet: re-measured"
        else:
            reason = book.verify(job["entry"]) or redo_reason(existing, current, retry_failed=config.retry_failed)
            if reason is None:
                reused.append(job["entry"])
                book.keep(job["entry"])
                continue
        if reason:
            redone[job["entry"]] = reason
        todo.append(job)
    book.save_run()

    guard = RunFolderGuard(book, data, config)

    def on_record(record: dict) -> None:
        book.write(guard.check(record))

    backend = make_backend(config)
    backend.execute(todo, on_record=on_record, console=console, progress=progress)
    notes.extend(book.restore())
    ordered = [read_json(book.path(n)) for n in names] + problems
    ordered = [r for r in ordered if r]
    write_summary(out, ordered)
    return Outcome(records=ordered, skipped=skipped, reused=reused, measured=[j["entry"] for j in todo],
                   skipped_scales={n: catalog["entries"][n]["scale"] for n in skipped}, left_out=left_out,
                   helper_notes=catalog_notes(catalog) + helper_notes, redone=redone, notes=notes)


def heavy_entries(catalog: dict, names: list[str]) -> dict:
    """Entries whose card says ``heavy``: the default job leaves them out (entry -> reason)."""
    out = {}
    for name in names:
        card = catalog["entries"][name]
        if card.get("heavy"):
            params = (card.get("expected") or {}).get("params")
            out[name] = "heavy: minutes on a CPU" + (f", {params / 1e6:.1f}M parameters" if params else "")
    return out


def split_helpers(problems: list[dict], models: Path) -> tuple[list[dict], list[str]]:
    """A file without a card that a model file of the folder imports is a helper, not an entry:
    it becomes a note instead of a ``no_card`` row. Every other problem stays a record."""
    from harness.submissions.siblings import importers_of

    kept, notes = [], []
    for rec in problems:
        users = importers_of(Path(rec.get("file") or ""), models) if rec["status"] == "no_card" else []
        if users:
            notes.append(f"{Path(rec['file']).name}: helper imported by {', '.join(users)}; not an entry "
                         "(name it with a leading '_' to silence this line)")
        else:
            kept.append(rec)
    return kept, notes


def _has_saved_sr(record: dict, settings: RunSettings) -> bool:
    """With --save-sr, a record is reused only if its SR images were saved into that folder."""
    if not settings.save_sr or record.get("status") not in ("ok", "untrained"):
        return True
    saved = record.get("sr_saved") or {}
    return saved.get("dir") == str(Path(settings.save_sr).resolve())


def catalog_notes(catalog: dict) -> list[str]:
    """One line per shared file or folder (no entry of its own, imported by submissions: found by discovery,
    packages included) and per folder of the models folder that is not a submission."""
    lines = [f"{name}: helper imported by {', '.join(users)}; not an entry"
             for name, users in sorted(catalog.get("helpers", {}).items())]
    return lines + [f"not a submission: {o['reason']}" for o in catalog.get("not_submissions", [])]


def make_backend(config: RunConfig):
    if config.backend == "local":
        return LocalBackend()
    if config.backend == "ray":
        from harness.running.ray_backend import RayBackend  # optional dependency: imported on demand

        return RayBackend(address=config.address, **config.extra)
    raise RunError(f"unknown backend {config.backend!r}; use 'local' or 'ray'")


class LocalBackend:
    """One entry at a time on this machine: nothing else runs beside the timed entry."""

    fairness = {"backend": "local", "concurrent_entries": 1}

    def execute(self, jobs: list[dict], *, on_record, console=None, progress: bool = True) -> None:
        from harness.running.execute import execute_job

        with progress_bar(len(jobs), console, enabled=progress) as advance:
            for job in jobs:
                advance(job["entry"], done=False)
                record = execute_job(job)
                record["fairness"] = dict(self.fairness, exclusive_timing=True)
                on_record(record)
                advance(f"{job['entry']}: {record['status']}", done=True)


def run_document(config: RunConfig, catalog: dict, names, skipped, data) -> dict:
    """run.json: configuration, provenance, entries; ``records`` (content hashes) is filled by ``RecordBook``."""
    return {
        "schema": "esr-run/2",
        "models": str(Path(config.models).resolve()),
        "zoo": str(Path(config.zoo).resolve()),
        "scale": config.scale,
        "entries": names,
        "skipped_for_scale": skipped,
        "problems": [p["name"] for p in catalog["problems"]],
        "inferred": catalog.get("inferred", []),
        "helpers": catalog.get("helpers", {}),
        "not_submissions": catalog.get("not_submissions", []),
        "data": {split: info for split, (_, info) in data.items()},
        "settings": config.settings.to_dict(),
        "backend": config.backend,
        "tracks": list(config.tracks),
        "provenance": provenance(),
        "records": {},
    }


def write_summary(out: Path, records: list[dict]) -> None:
    from harness.running.summary import markdown

    atomic_write_text(Path(out) / "leaderboard.md", markdown(records, title=f"Run {Path(out).name}"))


def load_records(out: Path) -> list[dict]:
    return [r for r in (read_json(p) for p in sorted((Path(out) / "records").glob("*.json"))) if r]
