"""The cyclic garbage collector's policy for a process that holds a long-lived flow table.

CPython's default (700, 10, 10) runs a generation-0 collection every 700 net container
allocations; every new flow allocates several, so a flood runs them constantly, and each
full collection walks every object start-up left behind (rules, detector, imports).
`settle()` runs once per process when its first Inspector is built, i.e. after start-up:
  - gc.freeze(): what exists now moves to the permanent generation, never walked again;
  - a higher generation-0 threshold: fewer, larger young collections.
Cycles made later (per flow, per reload) are still collected: generations 1 and 2 keep
CPython's own ratios, so the garbage waiting for a collection stays bounded by
GEN0 * GEN1 container allocations (docs/performance-passes.md, "Garbage collection").
"""
import gc

GEN0 = 10_000          # young collections every 10k net allocations (CPython: 700)
GEN1 = 10              # CPython's ratios above generation 0: cycles wait at most GEN0*GEN1 allocations
GEN2 = 10

_settled = False


def settle():
    """Apply the policy once per process (a forked child inherits it: nothing to redo)."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()        # start-up's own garbage is freed, not frozen for good
    gc.freeze()
    gc.set_threshold(GEN0, GEN1, GEN2)
