"""A deterministic corpus of (query, passage) pairs from text that ships with Python itself.

Passages are 1-7 consecutive sentences from standard-library docstrings; queries are 2-8 words
from a sentence of the same or another passage. The same seed gives the same pairs on any
machine with the same Python version. Used by the parity fixtures and the benchmarks.
"""

import importlib
import warnings
import random
import re

MODULES = [
    "argparse", "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "email", "enum", "fractions", "functools", "gzip", "heapq", "http.client",
    "inspect", "io", "itertools", "json", "logging", "os", "pathlib", "pickle", "queue", "random",
    "re", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile",
]


def docstrings(name: str) -> list[str]:
    """The docstring of module `name`, then those of its public callables by attribute name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
    docs = [module.__doc__ or ""]
    for attr in sorted(dir(module)):
        obj = getattr(module, attr, None)
        doc = getattr(obj, "__doc__", None)
        if not attr.startswith("_") and callable(obj) and isinstance(doc, str):
            docs.append(doc)
    return docs


def sentences() -> list[str]:
    out = []
    for name in MODULES:
        for doc in docstrings(name):
            text = " ".join(doc.split())
            for s in re.split(r"(?<=[.!?])\s+", text):
                if 60 <= len(s) <= 400 and not s.startswith(">>>"):
                    out.append(s)
    return list(dict.fromkeys(out))


def pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pool = sentences()
    result = []
    for _ in range(n):
        start = rng.randrange(len(pool) - 5)
        passage = " ".join(pool[start : start + rng.randint(1, 5) + rng.randint(0, 2)])
        source = pool[start] if rng.random() < 0.5 else rng.choice(pool)
        words = re.findall(r"[A-Za-z]+", source)
        k = rng.randint(2, 8)
        i = rng.randrange(max(1, len(words) - k + 1))
        query = " ".join(words[i : i + k]).lower() or "python"
        result.append((query, passage))
    return result


if __name__ == "__main__":
    import sys

    for q, p in pairs(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0):
        print(f"{q}\t{p}")
