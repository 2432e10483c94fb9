"""WebDataset shards: the format's one home. Torch-free; the torch loader lives in ``sltdata.loader``.

- ``index.py``: what a shard directory is (``index.json``, ``ShardIndex``, split and member names,
  the sample record ``KEY.json``, roll-over defaults).
- ``tar.py``: the tar format both ways, and the only module in sltdata that imports ``tarfile``:
  the writer asks it for member headers, padding and the end of archive (``tarfile.TarInfo.tobuf``
  builds the header block), the reader for the members of a stream.
- ``write.py``: ``write_shards`` (a store -> deterministic tars by fold + the index).
- ``read.py``: the one reader: tar members -> samples (key, json dict, arrays, npy without pickle),
  each member checked against the shard's member checksums before its sample is yielded, sample
  counts, ``verify_shards``. The loader, stats, verify, the HF card and benchmarks read
  through it.

Only ``index`` loads with the package; ``read``/``write`` load when one of their names is used.
"""

from sltdata.shards.index import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, INDEX_FILE, INDEX_FORMAT, INDEX_VERSION,
                                  MEMBER_RE, MEMBER_SUMS_SUFFIX, SAMPLE_FIELDS, SHARD_RE, TEST_SPLIT, ShardError,
                                  ShardIndex, fold_name, member_sums_name, sample_record, sanitize_key, shard_name)

# read.py and write.py load on first use (PEP 562), so the CLI can import the defaults above
# without pulling in pyarrow.
_LAZY = {"Sample": "read", "VerifyReport": "read", "count_samples": "read", "iter_samples": "read",
         "iter_shard": "read", "load_npy": "read", "verify_shards": "read",
         "characters_from_texts": "write", "write_shards": "write"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"sltdata.shards.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sltdata.shards' has no attribute {name!r}")


__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_SAMPLES", "INDEX_FILE", "INDEX_FORMAT", "INDEX_VERSION", "MEMBER_RE",
           "MEMBER_SUMS_SUFFIX", "member_sums_name", "SAMPLE_FIELDS", "SHARD_RE", "TEST_SPLIT", "ShardError", "ShardIndex", "fold_name", "sample_record",
           "sanitize_key", "shard_name", "Sample", "VerifyReport", "count_samples", "iter_samples", "iter_shard",
           "load_npy", "verify_shards", "characters_from_texts", "write_shards"]
