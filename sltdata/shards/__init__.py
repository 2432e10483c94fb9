"""WebDataset shards: the format's one home. Torch-free; the torch loader lives in ``sltdata.loader``.

- ``index.py``: what a shard directory is (``index.json``, ``ShardIndex``, split and member names,
  the sample record ``KEY.json``, roll-over defaults).
- ``tar.py``: the tar format both ways, and the only module in sltdata that imports ``tarfile``:
  the writer asks it for member headers, padding and the end of archive (``tarfile.TarInfo.tobuf``
  builds the header block), the reader for the members of a stream.
- ``write.py``: ``write_shards`` (a store -> deterministic tars by fold + the index).
- ``read.py``: the one reader: tar members -> samples (key, json dict, arrays, npy without pickle),
  sample counts, ``verify_shards``. The loader, stats, verify, the HF card and benchmarks read
  through it.
"""

from sltdata.shards.index import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, INDEX_FILE, INDEX_FORMAT, INDEX_VERSION,
                                  MEMBER_RE, SAMPLE_FIELDS, SHARD_RE, TEST_SPLIT, ShardError, ShardIndex, fold_name,
                                  sample_record, sanitize_key, shard_name)
from sltdata.shards.read import (Sample, VerifyReport, count_samples, iter_samples, iter_shard, load_npy,
                                 verify_shards)
from sltdata.shards.write import characters_from_texts, write_shards

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_SAMPLES", "INDEX_FILE", "INDEX_FORMAT", "INDEX_VERSION", "MEMBER_RE",
           "SAMPLE_FIELDS", "SHARD_RE", "TEST_SPLIT", "ShardError", "ShardIndex", "fold_name", "sample_record",
           "sanitize_key", "shard_name", "Sample", "VerifyReport", "count_samples", "iter_samples", "iter_shard",
           "load_npy", "verify_shards", "characters_from_texts", "write_shards"]
