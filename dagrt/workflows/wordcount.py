"""Word count: chunk a text, tokenize each chunk, count words per chunk, merge in a tree.

The text is generated (a seeded stream of English words with Zipf-like
frequencies, so any size is reproducible) or read from a file. Tasks:
``tokenize`` and ``count`` per chunk, and ``chunks - 1`` pairwise ``merge``s.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import dagrt

from .trees import pairwise

__all__ = ["BENCH", "DEFAULTS", "build", "check", "generate", "n_tasks", "reference", "split"]

DEFAULTS: dict[str, Any] = {"words": 20_000, "chunks": 8, "seed": 0, "path": None}
BENCH: dict[str, Any] = {"words": 2_000_000, "chunks": 32, "seed": 0, "path": None}

VOCABULARY = """the of and to a in that is was he for it with as his on be at by i this had not are
but from or have an they which one you were her all she there would their we him been has when
who will more no if out so said what up its about into than them can only other new some could
time these two may then do first any my now such like our over man me even most made after also
did many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year off
come since against go came right used take three states himself few house use during without
again place american around however home small found thought went say part once general high
upon school every does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet government system better
set told nothing night end why called didn't eyes find going look asked later knew point next
program city business give group toward young days let room president side social given present
several order national possible rather second face per among form important often things looked
early white case john become large big need four within felt along children saw best church ever
least power development light thought seemed family interest want members mind country area others
done turned although open god service certain kind problem began different door thus help sense
means whole matter perhaps itself york times law human line above name example action company
local show whether five history gave today either act feet across taken past quite anything seen
having death week experience body word half really field car words already themselves information
tell together college shall money period held keep sure probably free seems real behind cannot
miss political air question making office brought whose special heard major problems ago became
federal moment study available known result street economic boy position reason change south board
individual job areas society west close turn love community true court force full""".split()  # noqa: SIM905

_TOKEN = re.compile(r"[a-z']+")


def generate(words: int, seed: int = 0) -> str:
    """A reproducible text of ``words`` words, ten to a line."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(VOCABULARY) + 1)
    weights = 1.0 / ranks
    picks = rng.choice(len(VOCABULARY), size=words, p=weights / weights.sum())
    tokens = [VOCABULARY[i] for i in picks]
    return "\n".join(" ".join(tokens[i : i + 10]) for i in range(0, len(tokens), 10))


def split(text: str, chunks: int) -> list[str]:
    """``chunks`` pieces of ``text`` of about equal size, cut at line ends."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    lines = text.splitlines()
    size = -(-len(lines) // chunks) if lines else 0
    pieces = ["\n".join(lines[i : i + size]) for i in range(0, len(lines), size or 1)]
    pieces += [""] * (chunks - len(pieces))
    return pieces


def _text(words: int, seed: int, path: str | Path | None) -> str:
    if path is not None:
        return Path(path).read_text(errors="replace")
    return generate(words, seed)


@dagrt.task
def tokenize(chunk: str) -> list[str]:
    return _TOKEN.findall(chunk.lower())


@dagrt.task
def count(words: list[str]) -> dict[str, int]:
    return dict(Counter(words))


@dagrt.task
def merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = Counter(a)
    out.update(b)
    return dict(out)


def build(
    words: int = DEFAULTS["words"],
    chunks: int = DEFAULTS["chunks"],
    seed: int = DEFAULTS["seed"],
    path: str | Path | None = DEFAULTS["path"],
) -> dagrt.Node:
    return pairwise(merge, [count(tokenize(p)) for p in split(_text(words, seed, path), chunks)])


def n_tasks(chunks: int = DEFAULTS["chunks"], **_: Any) -> int:
    return 3 * chunks - 1


def reference(
    words: int = DEFAULTS["words"],
    chunks: int = DEFAULTS["chunks"],
    seed: int = DEFAULTS["seed"],
    path: str | Path | None = DEFAULTS["path"],
) -> dict[str, int]:
    return dict(Counter(_TOKEN.findall(_text(words, seed, path).lower())))


def check(result: Any, expected: Any) -> bool:
    return bool(result == expected)
