"""Waiting-queue structures: FIFO order, per-tenant FIFOs, and the lazy min-heap under rising and dropping keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equinox.request import Request, RequestSpec
from equinox.scheduling.queues import FifoQueue, LazyMinHeap, TenantQueues


def req(rid: str, tenant: str = "a") -> Request:
    return Request(RequestSpec(rid, tenant, 0.0, 4, 4))


class TestFifoQueue:
    def test_arrival_order_and_front_push(self) -> None:
        q = FifoQueue()
        a, b, c = req("a"), req("b", "t2"), req("c")
        for r in (a, b, c):
            q.push(r)
        assert len(q) == 3 and q.peek() is a
        assert q.pop() is a
        q.push_front(a)  # a preempted request resumes first
        assert [q.pop(), q.pop(), q.pop()] == [a, b, c]
        assert len(q) == 0 and q.peek() is None

    def test_remove_is_lazy_but_invisible(self) -> None:
        q = FifoQueue()
        a, b, c = req("a"), req("b", "t2"), req("c")
        for r in (a, b, c):
            q.push(r)
        q.remove(a)
        q.remove(c)
        assert len(q) == 1
        assert q.num_of("a") == 0 and q.num_of("t2") == 1
        assert q.peek() is b
        assert q.pop() is b
        assert q.peek() is None

    def test_pop_empty_raises(self) -> None:
        with pytest.raises(IndexError):
            FifoQueue().pop()

    def test_per_tenant_counts(self) -> None:
        q = FifoQueue()
        for i in range(3):
            q.push(req(f"x{i}", "x"))
        q.push(req("y0", "y"))
        assert (q.num_of("x"), q.num_of("y"), q.num_of("z")) == (3, 1, 0)
        q.pop()
        assert q.num_of("x") == 2


class TestTenantQueues:
    def test_backlog_transitions(self) -> None:
        q = TenantQueues()
        assert q.push(req("a0", "a")) is True  # became backlogged
        assert q.push(req("a1", "a")) is False
        assert q.push(req("b0", "b")) is True
        assert len(q) == 3 and list(q.backlogged()) == ["a", "b"]
        assert q.head("a").request_id == "a0"
        assert q.pop("a") is False
        assert q.pop("a") is True  # a stops being backlogged
        assert not q.is_backlogged("a") and q.head("a") is None
        assert list(q.backlogged()) == ["b"]

    def test_front_push_and_remove(self) -> None:
        q = TenantQueues()
        a0, a1, a2 = req("a0"), req("a1"), req("a2")
        q.push(a0)
        q.push(a1)
        q.push(a2, front=True)
        assert q.head("a") is a2
        assert q.remove(a1) is False
        assert q.num_of("a") == 2
        assert q.remove(req("zz")) is False  # not queued: no change
        assert q.remove(a2) is False and q.remove(a0) is True
        assert len(q) == 0


class TestLazyMinHeap:
    def test_min_follows_rising_keys_lazily(self) -> None:
        keys = {"a": 1.0, "b": 2.0, "c": 3.0}
        h = LazyMinHeap(keys.__getitem__)
        for m in keys:
            h.add(m)
        assert h.min() == "a"
        keys["a"] = 10.0  # rose: no re-add needed
        assert h.min() == "b"
        keys["b"] = 5.0
        assert h.min() == "c"
        keys["c"] = 11.0
        assert h.min() == "b"

    def test_dropping_key_needs_refresh(self) -> None:
        keys = {"a": 1.0, "b": 2.0}
        h = LazyMinHeap(keys.__getitem__)
        h.add("a")
        h.add("b")
        keys["a"] = 5.0
        assert h.min() == "b"
        keys["a"] = 0.5  # dropped: the caller pushes again
        h.add("a")
        assert h.min() == "a"

    def test_ties_break_by_first_seen_and_discard(self) -> None:
        keys = {"x": 1.0, "y": 1.0, "z": 1.0}
        h = LazyMinHeap(keys.__getitem__)
        for m in ("y", "x", "z"):
            h.add(m)
        assert h.min() == "y"
        h.discard("y")
        assert "y" not in h and len(h) == 2
        assert h.min() == "x"
        h.add("y")  # re-added: keeps its first-seen rank
        assert h.min() == "y"
        for m in ("x", "y", "z"):
            h.discard(m)
        assert h.min() is None and len(h) == 0

    def test_heap_does_not_grow_with_backlog_cycles(self) -> None:
        # A tenant that goes idle and becomes backlogged again must not leave duplicate entries
        # behind: duplicates are re-sifted on every key rise and make each decision cost O(cycles).
        keys = {"stay": 0.0, "cycle": 0.0}
        h = LazyMinHeap(keys.__getitem__)
        h.add("stay")
        for i in range(5000):
            h.add("cycle")
            keys["cycle"] = float(i + 1)
            assert h.min() == "stay"
            keys["stay"] = float(i) + 0.5
            h.discard("cycle")
        assert len(h._heap) <= 64

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(["add", "discard", "rise", "drop", "min"]), st.integers(0, 5),
                      st.integers(0, 20)),
            max_size=80,
        )
    )
    def test_matches_brute_force(self, ops: list[tuple[str, int, int]]) -> None:
        keys: dict[str, float] = {}
        members: list[str] = []  # first-seen order
        live: set[str] = set()
        h = LazyMinHeap(lambda m: keys[m])
        for op, i, amount in ops:
            m = f"m{i}"
            keys.setdefault(m, 0.0)
            if op == "add":
                if m not in members:
                    members.append(m)
                live.add(m)
                h.add(m)
            elif op == "discard":
                live.discard(m)
                h.discard(m)
            elif op == "rise":
                keys[m] += amount
            elif op == "drop":
                keys[m] -= amount
                if m in live:
                    h.add(m)  # the contract: refresh after a drop
            expected = min(live, key=lambda x: (keys[x], members.index(x))) if live else None
            assert h.min() == expected
            assert len(h) == len(live)
            assert set(h.members()) == live
