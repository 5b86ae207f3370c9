"""Re-rank the published NTIRE 2022 ESR results table under the shipped ``ntire2022`` track.

The organizers' table (``$ESR_SHARED/submissions/ntire2022/published_table.csv``, default
``../shared`` relative to the repository root; never copied into the repository) is mapped to the
leaderboard's CSV input contract (``docs/leaderboard.md``), ranked with the track's shipped
defaults, and every printed rank is compared with the re-ranked one.

    python bench/ntire2022_published_to_contract.py                 # reproduction counts, mismatches
    python bench/ntire2022_published_to_contract.py --out pub.csv   # write the contract CSV
    python bench/ntire2022_published_to_contract.py --infer         # which PSNR rules reproduce the separator
    esr rank pub.csv --track ntire2022 --format md                  # the tables themselves

Mapping (published column -> contract column, canonical units):
    team -> entry; IMDN_baseline -> status "baseline" (the challenge's baseline); "RFDN AIM2020
    Winner" -> status "reference" (listed for comparison, never ranked); psnr_val ->
    valid.psnr_rgb; psnr_test -> test.psnr_rgb; ave_time_ms -> runtime_ms (the track metric
    "Ave. Time", given as published: the table prints no per-split runtimes); params_m x 1e6 ->
    params; flops_g x 1e9 -> macs_legacy; acts_m x 1e6 -> activations; gpu_mem_m ->
    valid.memory_mib; conv -> conv. The published ranks and the ``ranked`` flag are not passed on:
    they are what the re-ranking is compared with.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "IMDN_baseline"
REFERENCES = ("RFDN AIM2020 Winner",)
CONTRACT_COLUMNS = ["entry", "status", "valid.psnr_rgb", "test.psnr_rgb", "runtime_ms", "params", "macs_legacy",
                    "activations", "valid.memory_mib", "conv"]


def published_path() -> Path:
    shared = Path(os.environ.get("ESR_SHARED", REPO.parent / "shared"))
    return shared / "submissions" / "ntire2022" / "published_table.csv"


def read_published(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _count(text: str, factor: float) -> str:
    """A printed figure in M or G as a count, without binary-float noise (0.317 M -> 317000)."""
    return str(round(float(text) * factor))


def to_contract(rows: list[dict], seed: int | None = None) -> str:
    """The published rows as a contract CSV (rows shuffled with ``seed`` when given)."""
    rows = list(rows)
    if seed is not None:
        random.Random(seed).shuffle(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write("# NTIRE 2022 ESR published results table, mapped by bench/ntire2022_published_to_contract.py\n")
    writer.writerow(CONTRACT_COLUMNS)
    for r in rows:
        status = "baseline" if r["team"] == BASELINE else "reference" if r["team"] in REFERENCES else ""
        writer.writerow([r["team"], status, r["psnr_val"], r["psnr_test"], r["ave_time_ms"],
                         _count(r["params_m"], 1e6), _count(r["flops_g"], 1e9), _count(r["acts_m"], 1e6),
                         r["gpu_mem_m"], r["conv"]])
    return out.getvalue()


def rank_published(rows: list[dict], seed: int | None = None):
    """Rankings of the three sub-tracks under the shipped defaults."""
    sys.path.insert(0, str(REPO))
    from leaderboard.inputs import read_csv
    from leaderboard.rank import rank_all
    from leaderboard.tracks import load_track

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ntire2022_published.csv"
        path.write_text(to_contract(rows, seed))
        frame = read_csv(path)
    track = load_track("ntire2022")
    return {r.sub.id: r for r in rank_all(frame, track)}


def compare(rows: list[dict], rankings) -> dict:
    """Counts of re-ranked values equal to the printed ones, and the mismatches."""
    import pandas as pd

    ranked = [r for r in rows if r["ranked"] == "yes"]
    checks = {
        "main rank": ("main", "rank", "main_track_rank"),
        "sub-track 1 sum": ("complexity", "key", "subtrack1_score"),
        "sub-track 2 sum": ("overall", "key", "subtrack2_score"),
        "sub-track 1 rank": ("complexity", "rank", "subtrack1_rank"),
        "sub-track 2 rank": ("overall", "rank", "subtrack2_rank"),
        "runtime rank": ("overall", "rank.runtime_ms", "ave_time_rank"),
        "#Params rank": ("overall", "rank.params", "params_rank"),
        "FLOPs rank": ("overall", "rank.macs_legacy", "flops_rank"),
        "#Acts rank": ("overall", "rank.activations", "acts_rank"),
        "memory rank": ("overall", "rank.memory_mib", "gpu_mem_rank"),
    }
    result = {"n": len(ranked), "counts": {}, "mismatches": [], "ranked_set_equal": None}
    main = rankings["main"].table.set_index("entry")
    got_ranked = set(main.index[main["ranked"]])
    result["ranked_set_equal"] = got_ranked == {r["team"] for r in ranked}
    result["extra_ranked"] = sorted(got_ranked - {r["team"] for r in ranked})
    result["missing_ranked"] = sorted({r["team"] for r in ranked} - got_ranked)
    for label, (sub, col, pub) in checks.items():
        table = rankings[sub].table.set_index("entry")
        ok = 0
        for r in ranked:
            got = table.at[r["team"], col] if r["team"] in table.index else None
            got = None if got is None or bool(pd.isna(got)) else int(got)
            if got == int(r[pub]):
                ok += 1
            else:
                result["mismatches"].append(f"{label}: {r['team']} printed {r[pub]}, re-ranked {got}")
        result["counts"][label] = ok
    return result


def infer_separator(rows: list[dict]) -> list[str]:
    """Which single-threshold PSNR rules (printed two-decimal values) reproduce the separator."""
    teams = [r for r in rows if r["team"] != BASELINE and r["team"] not in REFERENCES]
    ranked = {r["team"] for r in teams if r["ranked"] == "yes"}
    grid = [round(27.00 + 0.01 * i, 2) for i in range(300)]
    rules = {
        "valid PSNR >= T": lambda r, t: float(r["psnr_val"]) >= t,
        "test PSNR >= T": lambda r, t: float(r["psnr_test"]) >= t,
        "mean(valid, test) PSNR >= T": lambda r, t: (float(r["psnr_val"]) + float(r["psnr_test"])) / 2 >= t - 1e-9,
    }
    out = []
    for name, rule in rules.items():
        hits = [t for t in grid if {r["team"] for r in teams if rule(r, t)} == ranked]
        out.append(f"{name}: " + (f"reproduces the separator for T in [{hits[0]:.2f}, {hits[-1]:.2f}] dB"
                                  if hits else "reproduces it for no T"))
    test_hits = [t for t in grid if {r["team"] for r in teams if float(r["psnr_test"]) >= t} == ranked]
    both = [v for v in grid if all({r["team"] for r in teams if float(r["psnr_test"]) >= t
                                    and float(r["psnr_val"]) >= v} == ranked for t in test_hits)]
    if both:
        out.append(f"test PSNR >= T and valid PSNR >= V: the same for any V <= {both[-1]:.2f} dB")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=None, help="published_table.csv (default: from ESR_SHARED)")
    p.add_argument("--out", type=Path, help="write the contract CSV here and stop")
    p.add_argument("--seed", type=int, default=None, help="shuffle the rows with this seed first")
    p.add_argument("--infer", action="store_true", help="print which PSNR rules reproduce the separator")
    args = p.parse_args(argv)
    path = args.table or published_path()
    if not path.is_file():
        print(f"{path}: not found (set ESR_SHARED to the folder holding submissions/)", file=sys.stderr)
        return 2
    rows = read_published(path)
    if args.out:
        args.out.write_text(to_contract(rows, args.seed))
        print(f"wrote {args.out}")
        return 0
    if args.infer:
        for line in infer_separator(rows):
            print(line)
        return 0
    result = compare(rows, rank_published(rows, args.seed))
    print(f"NTIRE 2022 published table, {result['n']} ranked teams, shipped ntire2022 defaults:")
    print(f"  ranked set identical: {result['ranked_set_equal']}"
          + (f" (extra {result['extra_ranked']}, missing {result['missing_ranked']})"
             if not result["ranked_set_equal"] else ""))
    for label, ok in result["counts"].items():
        print(f"  {label:18s} {ok}/{result['n']}")
    for line in result["mismatches"]:
        print(f"  mismatch: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
