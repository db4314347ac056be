"""The decode cohort: running requests in steady decode, advanced lazily (simulator fast path).

In a busy engine most running requests are decoding. Every iteration each of them gains
one output token and one token of KV, and nothing else about it changes until it needs a
new KV block or finishes. Touching each of them every iteration makes an iteration cost
O(running requests); a million-request replay then spends most of its time there.

The cohort keeps them lazily. A global counter `epoch` counts iterations; each member
records the epoch its counts were last brought up to date (its `RunMember.base`; the
cohort keeps its members' bookkeeping itself, `Request` carries none of it).
Per-tenant aggregates (members, context, blocks) give the batch shape and every tenant's
usage in O(tenants). Block needs and completions are indexed by the epoch they fall in.
A member's largest inter-token gap is a suffix maximum over the iterations' gaps, kept
on a monotonic stack. A member's fields are brought up to date when it finishes, when
the scheduler disbands the cohort (an iteration that needs the explicit path:
preemption, a token budget smaller than the cohort), when a policy reads running
requests (`Policy.reads_running_progress`), and at the end of a simulation. Runs of
decode-only iterations (decode_run.py) are planned and applied on the cohort too.

The results are the same, to the bit, as advancing every request every iteration:
`tests/scheduling/test_cohort.py` compares whole simulations both ways.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable

from equinox.request import Request, RequestStatus
from equinox.sim.engine.kv_pool import BlockPool
from equinox.sim.engine.planner import DecodeRun, RunMember, plan_run
from equinox.types import BatchLimits, BatchShape, batch_shape


class DecodeCohort:
    """Decoding running requests whose per-iteration progress is implicit (see module doc)."""

    def __init__(self, kv: BlockPool) -> None:
        self.kv = kv
        self.block_size = kv.block_size
        self.epoch = 0  # iterations applied so far
        self.size = 0
        self.ctx = 0  # sum over members of (computed tokens + 1): what the next decode attends to
        self.last_end = 0.0  # when the last applied iteration ended (every member's last token)
        self.tenants: dict[str, list[int]] = {}  # tenant -> [members, context (as `ctx`), KV blocks]
        self._finish_at: dict[int, list[RunMember]] = {}  # epoch of the last token -> members
        self._need_at: dict[int, list[RunMember]] = {}  # epoch whose decode needs a new block -> members
        self._members: dict[Request, RunMember] = {}  # live memberships
        self._gap_epochs: list[int] = []  # monotonic stack: epochs with strictly decreasing gaps
        self._gaps: list[float] = []
        # Joiners whose last token is older than the last iteration (not scheduled in it, or
        # a recompute with one token left): their first gap is their own, not the cohort's.
        self._late_joiners: list[RunMember] = []

    # Membership ---------------------------------------------------------------------
    def join(self, req: Request) -> None:
        """Add a running request that decodes from the next iteration on."""
        computed = req.num_computed_tokens
        finish = self.epoch + req.num_target_tokens - req.num_output_tokens_done
        m = self._members[req] = RunMember(req, self.epoch, finish)
        self._finish_at.setdefault(finish, []).append(m)
        need = self.epoch + 1 + req.num_blocks * self.block_size - computed
        if need <= finish:
            self._need_at.setdefault(need, []).append(m)
        agg = self.tenants.get(req.spec.tenant)
        if agg is None:
            agg = self.tenants[req.spec.tenant] = [0, 0, 0]
        agg[0] += 1
        agg[1] += computed + 1
        agg[2] += req.num_blocks
        self.size += 1
        self.ctx += computed + 1
        if req.last_token_time != self.last_end:
            self._late_joiners.append(m)

    def is_member(self, req: Request) -> bool:
        """True while `req` decodes implicitly in the cohort."""
        return req in self._members

    def _leave(self, req: Request) -> None:
        """Drop a member whose fields are up to date."""
        self._members.pop(req).is_live = False
        tenant = req.spec.tenant
        agg = self.tenants[tenant]
        agg[0] -= 1
        if agg[0] == 0:
            del self.tenants[tenant]
        else:
            agg[1] -= req.num_computed_tokens + 1
            agg[2] -= req.num_blocks
        self.size -= 1
        self.ctx -= req.num_computed_tokens + 1

    def _refresh(self, m: RunMember) -> None:
        """Bring a member's counts, last token time and largest gap up to the current epoch."""
        req = m.req
        steps = self.epoch - m.base
        if steps <= 0:
            return
        req.num_computed_tokens += steps
        req.num_output_tokens_done += steps
        req.last_token_time = self.last_end
        gap = self._gaps[bisect_left(self._gap_epochs, m.base + 1)]
        if gap > req.max_itl_s:
            req.max_itl_s = gap
        m.base = self.epoch

    def refresh_all(self) -> None:
        """Bring every member up to date (they stay members)."""
        for m in self._members.values():
            self._refresh(m)

    def disband(self) -> None:
        """Bring every member up to date and empty the cohort."""
        self.refresh_all()
        for m in self._members.values():
            m.is_live = False
        self._members.clear()
        self.tenants.clear()
        self._finish_at.clear()
        self._need_at.clear()
        self._gap_epochs.clear()
        self._gaps.clear()
        self._late_joiners.clear()
        self.size = self.ctx = 0

    # One iteration --------------------------------------------------------------------
    def num_blocks_needed_next(self) -> int:
        """New blocks the members need for the next iteration (what `allocate_next` would take)."""
        entries = self._need_at.get(self.epoch + 1)
        return sum(1 for m in entries if m.is_live) if entries else 0

    def allocate_next(self) -> bool:
        """Give the members that need one a block for the next iteration; False (nothing done) if KV is short."""
        entries = self._need_at.get(self.epoch + 1)
        if not entries:
            return True
        needy = [m for m in entries if m.is_live]
        if len(needy) > self.kv.num_free:
            return False
        del self._need_at[self.epoch + 1]
        self._allocate(needy, self.epoch + 1)
        return True

    def _allocate(self, needy: list[RunMember], epoch: int) -> None:
        self.kv.allocate(len(needy))
        tenants = self.tenants
        block_size = self.block_size
        for m in needy:
            req = m.req
            req.num_blocks += 1
            tenants[req.spec.tenant][2] += 1
            nxt = epoch + block_size
            if nxt <= m.finish:
                self._need_at.setdefault(nxt, []).append(m)

    def advance(self, end: float, usage: dict[str, list[int]]) -> list[Request]:
        """Apply one iteration that ended at `end` in which every member decoded.

        Adds each tenant's [prefill, output, context, blocks] to `usage`; returns the
        members that produced their last token (up to date, no longer members, KV
        freed), in admission order.
        """
        epoch = self._step(end)
        if not self.size:
            return []
        for tenant, agg in self.tenants.items():
            n = agg[0]
            u = usage.get(tenant)
            if u is None:
                usage[tenant] = [0, n, agg[1], agg[2]]
            else:
                u[1] += n
                u[2] += agg[1]
                u[3] += agg[2]
            agg[1] += n
        self.ctx += self.size
        return self._finish(epoch)

    def _step(self, end: float) -> int:
        """Count one more iteration, ending at `end`, and record its gap."""
        epoch = self.epoch = self.epoch + 1
        gap = end - self.last_end
        self.last_end = end
        if not self.size:
            return epoch
        epochs, gaps = self._gap_epochs, self._gaps
        while gaps and gaps[-1] <= gap:
            gaps.pop()
            epochs.pop()
        epochs.append(epoch)
        gaps.append(gap)
        if self._late_joiners:
            # Their own gap is at least the cohort's (their last token is older): the suffix
            # maximum may include the cohort's gap for this iteration without harm.
            for m in self._late_joiners:
                req = m.req
                if m.is_live and req.last_token_time is not None:
                    own = end - req.last_token_time
                    if own > req.max_itl_s:
                        req.max_itl_s = own
            self._late_joiners.clear()
        return epoch

    def _finish(self, epoch: int) -> list[Request]:
        entries = self._finish_at.pop(epoch, None)
        if not entries:
            return []
        members = [m for m in entries if m.is_live]
        members.sort(key=lambda m: m.req.admit_seq)
        finished = [m.req for m in members]
        for m in members:
            req = m.req
            self._refresh(m)
            self._leave(req)
            self.kv.free(req.num_blocks)
            req.num_blocks = 0
            req.status = RequestStatus.FINISHED
            req.finish_time = req.last_token_time
        return finished

    # Runs of decode-only iterations ---------------------------------------------------
    def plan_run(
        self, limits: BatchLimits, now: float, step_time: Callable[[BatchShape], float], stop_time: float,
        interval_s: float, max_steps: int = 100_000, visible_time: float = math.inf,
        decode_time: Callable[[int, int], float] | None = None,
    ) -> DecodeRun | None:
        """Plan decode-only iterations from `now` when every running request is a member.

        The shared planner (`planner.plan_run`) over the cohort's epoch-indexed needs and
        completions, instead of every request. With a
        `visible_time` (the next arrival) the run stops there instead of at `stop_time`, and
        the iteration that starts before it and ends after it is planned as the run's
        crossing iteration: with nothing waiting when it starts, it too decodes every member.
        `decode_time(sequences, context)`, when given, must equal `step_time` of that
        decode-only batch (a cost model's shortcut).
        """
        if decode_time is None:
            # Not a `def decode_time`: mypyc miscompiles a nested function that rebinds a parameter.
            def batch_decode_time(num_seqs: int, context_tokens: int) -> float:
                return step_time(batch_shape(0, 0, 0, num_seqs, context_tokens))

            decode_time = batch_decode_time

        return plan_run(
            size=self.size, ctx=self.ctx, num_free=self.kv.num_free, num_used=self.kv.num_used,
            block_size=self.block_size, epoch=self.epoch, need_at=self._need_at, finish_at=self._finish_at,
            limits=limits, now=now, decode_time=decode_time, stop_time=stop_time, interval_s=interval_s,
            max_steps=max_steps, visible_time=visible_time,
        )

    def apply_run(self, run: DecodeRun) -> tuple[list[Request], dict[str, list[int]]]:
        """Apply a run from `plan_run`: finished members (by finish time, then admission) and usage.

        Usage per tenant is [0, output tokens, context tokens, blocks held at the end] as
        `decode_run.apply_decode_run` reports it. A tenant's usage only changes shape when
        one of its members leaves, so it is summed in closed form between those iterations.
        """
        usage: dict[str, list[int]] = {}
        settled: dict[str, int] = {}  # tenant -> iteration its usage is summed through
        tenants = self.tenants
        start = self.epoch
        finished: list[Request] = []
        needs = run.needs
        need_at = self._need_at
        for end in run.step_ends:
            nxt = self.epoch + 1
            need_at.pop(nxt, None)  # the plan listed the live entries (and needs arising in the run)
            needy = needs.get(nxt)
            if needy:
                self._allocate(needy, nxt)
            epoch = self._step(end)
            self.ctx += self.size
            if epoch in self._finish_at:
                for m in self._finish_at[epoch]:
                    if m.is_live:
                        tenant = m.req.spec.tenant
                        self._settle(tenant, epoch, settled.get(tenant, start), usage)
                        settled[tenant] = epoch
                finished.extend(self._finish(epoch))
        for tenant in tenants:
            self._settle(tenant, self.epoch, settled.get(tenant, start), usage)
        for tenant, u in usage.items():
            agg = tenants.get(tenant)
            u[3] = agg[2] if agg is not None else 0
        return finished, usage

    def _settle(self, tenant: str, epoch: int, since: int, usage: dict[str, list[int]]) -> None:
        """Add `tenant`'s usage over iterations (since, epoch] (its members unchanged) to `usage`."""
        steps = epoch - since
        if steps <= 0:
            return
        agg = self.tenants[tenant]
        n, ctx = agg[0], agg[1]
        u = usage.get(tenant)
        if u is None:
            u = usage[tenant] = [0, 0, 0, 0]
        u[1] += n * steps
        u[2] += steps * ctx + n * steps * (steps - 1) // 2
        agg[1] = ctx + n * steps
