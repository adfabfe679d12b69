"""Compare two runs token by token (issue 25): quantized against full precision, a
served model against the local one, settings A against B, a prompt alone against the
same prompt in a padded batch.

The pieces, one module each:

- spec.py: `SideSpec` (an engine spec, sampling settings, template on/off, an
  optional `BatchCondition`) and `parse_side`, the ``--a`` / ``--b`` ``KEY=VALUE``
  syntax (the CLI and the workbench's dialog share it; a bad item is one line).
- sides.py: `Side`, one side loaded (`open_side`, or `Side.of` over an engine the
  workbench already has): its prompt ids, its free run, its distributions on a path.
- run.py: `compare` / `compare_sides`, the comparison itself (tokenization first,
  then the shared path teacher-forced on both sides, then B running free), with a
  `CompareProgress` callback and a cancel event.
- records.py: `Comparison`, `CompareStep`, `Tokenization`, `CompareSummary`;
  `Comparison.to_json()` is DESIGN.md's `compare --format json`, `from_json` reads it
  back (``extended=True`` keeps the candidates and B's path, for sessions).
- kl.py: KL(A‖B) per position (exact over whole rows, or the top-N estimate), the
  summary statistics.
- corpus.py: `compare_corpus`, the file report of ``llama-perplexity
  --kl-divergence`` computed streaming over the caller's windows (`logitlab score`'s
  sliding windows, planned in tui/cli/score_cmd.py).

For the workbench: run `compare_sides` on the engine thread's worker with
``progress=`` and ``cancel=`` (Esc sets the event; `CompareCancelled` is raised
between steps); A is ``Side.of(engine, model, SideSpec(engine=spec, sampling=params))``
and the selected reply's ids go in as ``path=``.

Torch-free to import (torch loads when a side computes).
"""

from engine.compare.records import (
    CompareCandidate,
    CompareStep,
    CompareSummary,
    Comparison,
    Tokenization,
)
from engine.compare.run import CompareProgress, ProgressFn, compare, compare_sides
from engine.compare.sides import (
    CompareCancelled,
    Side,
    SideLoadError,
    close_side,
    open_side,
)
from engine.compare.spec import SPEC_KEYS, BatchCondition, SideSpec, parse_side

__all__ = [
    "SPEC_KEYS",
    "BatchCondition",
    "CompareCancelled",
    "CompareCandidate",
    "CompareProgress",
    "CompareStep",
    "CompareSummary",
    "Comparison",
    "ProgressFn",
    "Side",
    "SideLoadError",
    "SideSpec",
    "Tokenization",
    "close_side",
    "compare",
    "compare_sides",
    "open_side",
    "parse_side",
]
