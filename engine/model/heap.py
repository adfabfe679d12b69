"""A loaded model and Python's cyclic garbage collector.

A process that has imported torch and transformers and loaded a model holds about
half a million objects the collector tracks, and a full collection walks all of
them: ~200 ms on the bundled model on a 2-core CPU. It runs on whichever thread
happens to allocate, holding the GIL for its length, so the decode loop stalls:
the workbench took one such pause in most replies (bench/ui.py). Nearly all of
those objects live as long as the model, so once a load is done they are moved
out of the collector's reach (`gc.freeze`); later collections walk only what is
new. Before the next load they are handed back, so the old model's cycles can be
collected when the new one is settled.
"""

from __future__ import annotations

import gc

_replacing = False  # a load is replacing a model whose objects were frozen


def release() -> None:
    """Before a load: what an earlier load froze becomes collectable again."""
    global _replacing
    _replacing = _replacing or gc.get_freeze_count() > 0
    gc.unfreeze()


def settle() -> None:
    """After a load: collect the model it replaced (a first load has none, and
    skips the ~150 ms), then keep every live object out of later collections."""
    global _replacing
    if _replacing:
        gc.collect()
        _replacing = False
    gc.freeze()
