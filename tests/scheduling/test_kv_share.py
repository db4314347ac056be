"""KV fair share book: the shares do not depend on the process's string hashing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

SHARE_OF_A = """
from equinox.scheduling.policies.kv_share import KvShareBook
weights = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.7, "e": 1.3, "f": 0.35, "g": 0.11}
book = KvShareBook(10.0)
book.kv_blocks = (10, 100)
shares = book.shares({t: 1.0 for t in weights}, "a", [], 0.0, weights.__getitem__)
print(repr(shares.share["a"]), repr(sum(shares.share.values())))
"""


def test_shares_are_the_same_under_every_hash_seed() -> None:
    # Summing the weights in a set's order gave 2.2875816993464055 under most seeds and
    # 2.287581699346405 under PYTHONHASHSEED=2: runs with weighted tenants differed between processes.
    outputs = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": SRC}
        proc = subprocess.run([sys.executable, "-c", SHARE_OF_A], env=env, capture_output=True, text=True, check=True)
        outputs.add(proc.stdout)
    assert len(outputs) == 1, outputs
    capacity = 100 * 7.0 / 10  # blocks in the pool x tokens held per used block
    total = sum((0.1, 0.2, 0.3, 0.7, 1.3, 0.35, 0.11))  # the weights in name order, a ... g
    assert outputs.pop().split()[0] == repr(capacity / total * 0.1)
