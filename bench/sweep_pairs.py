#!/usr/bin/env python3
"""Whole-sweep throughput: a sweep with one job, then with two, alternating, each on a new database.

For each pair it prints the wall times (the process's, start to exit, as the shell sees them), the
speed-up of two jobs over one, and the time outside training: the job slots' time (jobs x wall)
less the runs' own clocks (SUM(runs.wall_s)), as a share of the slots' time. That share counts the
process's start and exit, opening and closing the database, claims, heartbeats and writes, and a
slot waiting for the other's last run. The summary gives medians and means over the pairs, then
both figures pooled: all one-job seconds over all two-job seconds, and the two-job sweeps' time
outside training over all their slots' time.

Standard library only (the database is read with Python's sqlite3). docs/performance.md gives the
figures of each sitting; this is how they were taken:

    cargo build --release
    python3 bench/sweep_pairs.py --pairs 12                          # the quickstart, about 30 s
    python3 bench/sweep_pairs.py --sweep my_sweep.toml --pairs 3
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time


def one_sweep(scalelab, sweep, db, jobs):
    """Runs `sweep` with `jobs` on a new database `db`; returns (wall s, the runs' summed s)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(db + suffix)
        except FileNotFoundError:
            pass
    cmd = [scalelab, "run", sweep, "--db", db, "--jobs", str(jobs), "--no-report", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip()}")
    with sqlite3.connect(db) as conn:
        (runs_s,) = conn.execute("SELECT SUM(wall_s) FROM runs").fetchone()
    if runs_s is None:
        sys.exit(f"error: {sweep} trained no runs (is it already done in {db}?)")
    return wall, runs_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scalelab", default="target/release/scalelab", help="the binary")
    ap.add_argument("--sweep", default="sweeps/quickstart.toml", help="the sweep file")
    ap.add_argument("--pairs", type=int, default=12, help="one-job and two-job sweeps each")
    ap.add_argument("--json-out", help="also write every pair's figures here")
    args = ap.parse_args()
    if args.pairs < 1:
        sys.exit("error: --pairs must be at least 1")
    if not os.path.exists(args.scalelab):
        sys.exit(f"error: {args.scalelab} not found (cargo build --release)")
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            row = {}
            for jobs in (1, 2):
                wall, runs_s = one_sweep(args.scalelab, args.sweep, f"{tmp}/j{jobs}.db", jobs)
                row[f"wall_j{jobs}"] = wall
                row[f"runs_s_j{jobs}"] = runs_s
                row[f"outside_j{jobs}"] = (jobs * wall - runs_s) / (jobs * wall)
            row["speedup"] = row["wall_j1"] / row["wall_j2"]
            pairs.append(row)
            print(
                f"pair {i}: one job {row['wall_j1']:.3f} s ({row['outside_j1']:.2%} outside), "
                f"two jobs {row['wall_j2']:.3f} s ({row['outside_j2']:.2%} of two slots), "
                f"speed-up {row['speedup']:.3f}, two jobs' runs / one job's "
                f"{row['runs_s_j2'] / row['runs_s_j1']:.3f}",
                flush=True,
            )

    def col(key):
        return [p[key] for p in pairs]

    sp = col("speedup")
    print(
        f"speed-up median {statistics.median(sp):.3f} ({min(sp):.3f}-{max(sp):.3f}); "
        f"outside training, one job: mean {statistics.mean(col('outside_j1')):.2%}, "
        f"median {statistics.median(col('outside_j1')):.2%}; two jobs: mean "
        f"{statistics.mean(col('outside_j2')):.2%}, median {statistics.median(col('outside_j2')):.2%} "
        f"({min(col('outside_j2')):.2%}-{max(col('outside_j2')):.2%})"
    )
    # Pooled over the pairs: every sweep's time counts once, so a pair that a noisy moment of the
    # host slowed on one side weighs as much as its seconds, not as a whole ratio.
    pooled_speedup = sum(col("wall_j1")) / sum(col("wall_j2"))
    pooled_outside = sum(2 * w - r for w, r in zip(col("wall_j2"), col("runs_s_j2"))) / sum(
        2 * w for w in col("wall_j2")
    )
    print(
        f"pooled over the pairs: speed-up {pooled_speedup:.3f} (one-job seconds / two-job "
        f"seconds), two jobs' time outside training {pooled_outside:.2%} of the slots"
    )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"sweep": args.sweep, "pairs": pairs}, f, indent=1)


if __name__ == "__main__":
    main()
