"""Fuzz: random and mutated studies raise nothing but ``AblangError``/``AblangErrors``.

Inputs are the fixture studies mutated (byte flips, deletions, duplications, random tokens, line
swaps) plus random token soup and random bytes: 10,000 in all, from a fixed seed, so a failure
reproduces. Whatever parses must also survive the formatter unchanged in meaning.
"""

from __future__ import annotations

import random
import time

from abl_fixtures import FIXTURES, tiny_table

from ablang.errors import AblangError, AblangErrors
from ablang.fmt import format_study
from ablang.parse import decode, parse
from ablang.resolve import resolve

N = 10_000
SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*/*.abl")) if p.stat().st_size]
VALID = [p.read_bytes() for p in sorted(FIXTURES.glob("plan/*.abl"))]  # mutants near valid studies
TOKENS = [
    "study", "model", "sampler", "seed", "samples", "noise", "per", "image", "prompts", "metrics", "device", "drop", "zero",
    "scale", "cache", "variant", "sweep", "search", "emit", "for", "t", "step", "in", "by", "every",
    "where", "and", "over", "of", "from", "validate", "config", "steps", "eta", "guidance", "speedup", "tiny",
    "glide", "ddim", "mid", "skip", "enc", "dec", "level", "baseline", "ssim", "fid", "mse",
    "[", "]", "{", "}", ",", "*", "..", "..=", "%", ">=", "<", "=", "-", "(", ")", "#", '"', '"x"',
    "0", "3", "-1", "1000", "999", "0.5", "+10", "1e999", "7" * 400, "9" * 5000, "\n", "\n\n", " ", "\t", "\r",
    "\x00", "\u00e9", "\ufeff",
]  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        j = min(len(b), i + rng.randint(0, 12))
        if how == 0 and b:  # flip bytes
            for k in range(i, max(j, i + 1)):
                if k < len(b):
                    b[k] = rng.randrange(256)
        elif how == 1:  # delete a run
            del b[i:j]
        elif how == 2:  # duplicate a run elsewhere
            k = rng.randrange(len(b) + 1)
            b[k:k] = b[i:j]
        elif how == 3:  # insert tokens
            b[i:i] = " ".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 3))).encode()
        elif how == 4:  # swap two lines
            lines = bytes(b).split(b"\n")
            x, y = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[x], lines[y] = lines[y], lines[x]
            b = bytearray(b"\n".join(lines))
        else:  # replace a token-ish run with another token
            b[i:j] = rng.choice(TOKENS).encode()
    return bytes(b)


def soup(rng: random.Random) -> bytes:
    if rng.random() < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return " ".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 40))).encode("utf-8")


def run_one(data: bytes, table) -> str:
    try:
        study = parse(decode(data, "fuzz.abl"), "fuzz.abl")
    except (AblangError, AblangErrors):
        return "syntax"
    formatted = parse(format_study(study))
    assert formatted == study, data
    try:
        resolve(study, table)
    except (AblangError, AblangErrors) as e:
        for err in getattr(e, "errors", [e]):
            assert isinstance(err, AblangError) and err.message, data
        return "semantic"
    return "ok"


def test_fuzz_raises_only_ablang_errors():
    rng = random.Random(20240601)
    table = tiny_table()
    outcomes = {"syntax": 0, "semantic": 0, "ok": 0}
    start = time.perf_counter()
    for n in range(N):
        data = soup(rng) if n % 5 == 0 else mutate(rng, rng.choice(VALID if n % 2 else SEEDS))
        try:
            outcomes[run_one(data, table)] += 1
        except AssertionError:
            raise
        except Exception as e:
            raise AssertionError(f"{type(e).__name__}: {e} on input {data!r}") from e
    elapsed = time.perf_counter() - start
    # Every path is exercised, and the whole run stays well inside a CI budget.
    assert all(outcomes.values()), outcomes
    assert elapsed < 60, f"{N} inputs took {elapsed:.1f} s"
