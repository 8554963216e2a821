"""Names of the pipeline's counts, and the one place that increments Beam counters.

Every stage reports what it saw as (name, n) pairs on a `counts` output; the pairs are
summed into one JSON file that the driver turns into metadata.json. Counts travel as
data, not only as Beam metrics, because metrics are best-effort on some runners and
metadata.json must be exact. The same numbers also go to Beam counters, so a runner's
UI (Dataflow, Flink) shows progress while the job runs. Two counts are Beam counters
only, because the output does not depend on them: how the shards were written
(`pipeline/write.py`: run files, or bytes sent through the runner's shuffle).
"""

import apache_beam as beam

COUNTS = "counts"  # tag of the (name, n) side output of each stage
DEAD_LETTER = "dead_letter"  # tag of the dead-letter output, and the count prefix

READ = "read"
FILTERED = "filtered"
TRUNCATED = "truncated"
TRUNCATED_CHARS = "truncated_chars"  # tokens whose characters were cut to --max_token_chars
WRITTEN = "written"
EXAMPLES = "examples"  # examples/<split>
TOKENS = "tokens"  # tokens/<split>
UNKNOWN = "unknown"  # unknown/<split>: tokens that are <unk>
CHARACTERS = "characters"  # characters/<split>: characters of the written records' text
HISTOGRAM = "length"  # length/<split>/<length>
SHARD = "shard"  # shard/<file name>
RUN_FILES = "run_files"  # run_files/<split>: temporary run files written (Beam counter only)
SHUFFLED_BYTES = "shuffled_bytes"  # shuffled_bytes/<split>: bytes of runs shuffled (Beam counter only)

NAMESPACE = "pipeline"


def key(*parts) -> str:
  return "/".join(str(part) for part in parts)


def inc(name: str, n: int = 1) -> None:
  """Adds to the Beam counter of a count (histograms and shards are too many to show)."""
  if not name.startswith((HISTOGRAM + "/", SHARD + "/")):
    beam.metrics.Metrics.counter(NAMESPACE, name).inc(n)
