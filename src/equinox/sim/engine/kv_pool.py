"""Paged KV cache accounting: fixed-size blocks, allocated per request, freed on finish/preemption."""

from __future__ import annotations

from equinox.errors import ConfigError


class BlockPool:
    """A pool of KV blocks of `block_size` tokens; never over-allocates (checked)."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks <= 0:
            raise ConfigError(f"the KV cache needs at least one block, got {num_blocks}")
        if block_size <= 0:
            raise ConfigError(f"block_size must be > 0, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free = num_blocks

    @property
    def num_used(self) -> int:
        """Blocks held by requests."""
        return self.num_blocks - self.num_free

    @property
    def capacity_tokens(self) -> int:
        """Tokens the pool can hold."""
        return self.num_blocks * self.block_size

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold `num_tokens` tokens."""
        return -(-num_tokens // self.block_size)

    def allocate(self, num_blocks: int) -> None:
        """Take `num_blocks` blocks; the caller checked `num_free` first."""
        if num_blocks > self.num_free or num_blocks < 0:
            raise RuntimeError(f"KV over-allocation: asked {num_blocks}, {self.num_free} free")
        self.num_free -= num_blocks

    def free(self, num_blocks: int) -> None:
        """Return `num_blocks` blocks."""
        self.num_free += num_blocks
        if self.num_free > self.num_blocks:
            raise RuntimeError("KV double free: more blocks returned than the pool holds")
