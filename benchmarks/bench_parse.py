"""Parse + resolve a generated 2,000-line study; prints the median seconds over several runs.

    python benchmarks/bench_parse.py [--lines 2000] [--runs 7]

Target: a median under 0.5 s on 2 cores. The study mixes every kind of line (settings, bare
interventions of every op and window form, variant blocks, sweeps, a search, comments) and is
resolved against a table shaped like the built-in model, so selector expansion, window splitting
and the overlap checks are all in the measurement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from abl_fixtures import tiny_table

from ablang.parse import parse
from ablang.resolve import resolve

HEADER = """\
study "Generated benchmark study"
model tiny
sampler ddim steps 100 eta 0.0 guidance 3.0
seed 0
samples 4
prompts "3", "7"
metrics mse, ssim, fid
search speedup where ssim >= 0.9 and fid <= +10% over drop, cache of enc[*], dec[*], skip[*], mid for t in 0..1000 by 100
"""


def generate(lines: int) -> str:
    """A valid study of at least ``lines`` lines; every bare line differs (t windows are unique)."""
    out = HEADER.splitlines()
    ops = [
        "drop skip[{a}]",
        "zero dec[{a}]",
        "scale enc[{b}] by 0.5",
        "cache dec[{a}] every 2",
        "drop skip[{a}, {c}]",
        "zero level[{l}]",
    ]
    windows = ["for t in {lo}..{hi}", "for t in {lo}..={hi}"]
    k = 0
    while len(out) < lines:
        k += 1
        lo = k % 900
        fill = {
            "a": k % 12,
            "b": 1 + k % 11,
            "c": (k + 5) % 12,
            "l": k % 4,
            "lo": lo,
            "hi": lo + 1 + k // 900,
            "s": k % 90,
        }
        kind = k % 10
        if kind < 6:
            out.append(f"{ops[k % len(ops)]} {windows[k % 2]}".format(**fill) + f"  # line {k}")
        elif kind < 9:
            out += [
                f"variant v{k} {{",
                "    drop skip[{a}] for t in 0..500".format(**fill),
                "    cache dec[{a}] every 3 for step in {s}..=99".format(**fill),
                "}",
                "",
            ]
        else:
            out.append("sweep zero skip[{a}] for t in 0..1000 by 250".format(**fill))
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    text = generate(args.lines)
    table = tiny_table()
    parse("model tiny")  # build the parser once, as a long-lived process would
    wall, cpu = [], []
    for _ in range(args.runs):
        w, c = time.perf_counter(), time.process_time()
        plan = resolve(parse(text, "bench.abl"), table)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    # CPU time is printed too: on a shared machine the wall clock also counts other people's work.
    print(
        f"{args.lines} lines, {len(plan.variants)} variants: median {statistics.median(wall):.3f} s "
        f"over {args.runs} runs (CPU {statistics.median(cpu):.3f} s; min {min(wall):.3f} s, "
        f"max {max(wall):.3f} s)"
    )


if __name__ == "__main__":
    main()
