"""Orchestrate a run: data decoded once, one isolated subprocess per entry, resumable.

The parent process never imports a team's model file: the catalog is read by a
subprocess (``python -m harness.submissions.discovery``), and each entry is measured by another
(``python -m harness.running.worker``). Records are written atomically; a rerun skips every
entry whose record is complete and whose key (card, checkpoint hash, data hashes,
settings) is unchanged, unless ``force``.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.submissions.checkpoint import LoadError, resolve_in_zoo, sha256_file
from harness.running.records import atomic_write_json, atomic_write_text, is_complete, provenance, read_json, record_key, error_record
from harness.running.errors import RunError
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


def prepare_data(config: RunConfig) -> dict:
    """Load, validate and cache every split once; {split: (cache path, description)}."""
    from harness.data.splits import DataError, describe, load_split, save_cache

    specs = {"valid": config.data}
    if config.test:
        specs["test"] = config.test
    prepared = {}
    for split, spec in specs.items():
        try:
            data = load_split(spec, scale=config.scale, split=split)
        except DataError as exc:
            raise RunError(f"data ({split}): {exc}") from exc
        info = describe(data)
        cache = Path(config.out) / "cache" / f"{split}-x{config.scale}-{info['file_hash'][:16]}.npz"
        if not cache.exists():
            save_cache(data, cache)
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


def build_jobs(config: RunConfig, catalog: dict, names: list[str], data: dict) -> list[dict]:
    settings = config.settings.key_dict()
    if config.extra.get("exclusive_timing"):  # timings taken alone on a machine are another measurement
        settings["exclusive_timing"] = True
    data_hashes = {split: info["file_hash"] for split, (_, info) in data.items()}
    jobs = []
    for name in names:
        card = catalog["entries"][name]
        ckpt = checkpoint_hash(card, config.zoo)
        jobs.append({
            "entry": name,
            "file": card["file"],
            "zoo": str(config.zoo),
            "splits": {split: cache for split, (cache, _) in data.items()},
            "data": {split: info for split, (_, info) in data.items()},
            "settings": config.settings.to_dict(),
            "key": record_key(card, ckpt, data_hashes, settings),
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


def _run_locked(config: RunConfig, *, console=None, progress: bool = True) -> Outcome:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_sandbox(config.settings)
    catalog = read_catalog(config.models, config.settings.timeout_s, sandbox=config.settings.sandbox,
                           memory_limit_mib=config.settings.memory_limit_mib)
    names, skipped = select_entries(catalog, config.entries, config.scale)
    left_out = {} if (config.entries or config.all_entries) else heavy_entries(catalog, names)
    names = [n for n in names if n not in left_out]
    data = prepare_data(config) if config.quality else {}
    jobs = build_jobs(config, catalog, names, data)
    write_run_file(config, catalog, names, skipped, data)

    records_dir = out / "records"
    problems, helper_notes = split_helpers(problem_records(catalog, config.entries), Path(config.models))
    for rec in problems:
        atomic_write_json(records_dir / f"{rec['entry']}.json", rec)
    reused, todo = [], []
    for job in jobs:
        existing = read_json(job["record"])
        if not config.force and is_complete(existing, job["key"]) and _has_saved_sr(existing, config.settings):
            reused.append(job["entry"])
        else:
            todo.append(job)

    backend = make_backend(config)
    backend.execute(todo, on_record=lambda rec: atomic_write_json(records_dir / f"{rec['entry']}.json", rec),
                    console=console, progress=progress)
    ordered = [read_json(records_dir / f"{n}.json") for n in names] + problems
    ordered = [r for r in ordered if r]
    write_summary(out, ordered)
    return Outcome(records=ordered, skipped=skipped, reused=reused, measured=[j["entry"] for j in todo],
                   skipped_scales={n: catalog["entries"][n]["scale"] for n in skipped}, left_out=left_out,
                   helper_notes=catalog_notes(catalog) + helper_notes)


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


def write_run_file(config: RunConfig, catalog: dict, names, skipped, data) -> None:
    atomic_write_json(Path(config.out) / "run.json", {
        "schema": "esr-run/1",
        "models": str(config.models),
        "zoo": str(config.zoo),
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
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def write_summary(out: Path, records: list[dict]) -> None:
    from harness.running.summary import markdown

    atomic_write_text(Path(out) / "leaderboard.md", markdown(records, title=f"Run {Path(out).name}"))


def load_records(out: Path) -> list[dict]:
    return [r for r in (read_json(p) for p in sorted((Path(out) / "records").glob("*.json"))) if r]
