"""HuggingFace outputs: a ``DatasetDict`` (one split per fold, plus ``test``) and pushing to the Hub.

``export_hf`` uses the same ``assign_folds`` as ``write_shards``, so the same store and seed give the
same folds in both outputs. The store is read once for all splits: each sample goes, encoded by the
split's ``Features``, to its split's Arrow file (datasets' ``ArrowWriter``, what ``from_generator``
writes with) in a private cache directory inside the output; each file becomes a split with
``Dataset.from_file``, then ``save_to_disk`` under a temporary name and renamed. (One
``from_generator`` per split read the whole store once per split: 6 passes for 5 folds + test.)

Landmarks are ``Array3D(shape=(None, P, 3), dtype="float32")``: a variable number of frames of P
points; NaN (undetected) survives Arrow unchanged, so the arrays read back bit for bit. When the
store's sequences do not all have the same number of points, landmarks fall back to a nested float32
``List``. ``label`` is a ``ClassLabel`` in the store's label-map order when there is a label map.

``push`` uploads a shard directory (tars + index.json) or an exported DatasetDict with a generated
dataset card. The token comes from ``HF_TOKEN`` or ``hf auth login`` via huggingface_hub; sltdata
never reads it into a message, a log line or a file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

from sltdata import outputs
from sltdata.errors import SltdataError
from sltdata.folds import FOLD_DEFAULTS, assign_store_folds
from sltdata.shards import INDEX_FILE, MEMBER_SUMS_SUFFIX, ShardError, ShardIndex, sample_record, verify_shards
from sltdata.store import METADATA_COLUMNS, Store, table_landmarks

log = logging.getLogger(__name__)

SLTDATA_FILE = "sltdata.json"  # the fold plan beside an exported DatasetDict
CARD_FILE = "README.md"
# What export-hf's --overwrite may replace: a directory holding an export's fold plan
EXPORT_WHAT = "an export-hf output"
EXPORT_MARKERS = (SLTDATA_FILE,)


class HubError(SltdataError):
    """The Hub could not be reached or refused the upload (one line, never the token)."""


def _class_names(labels: dict[str, int] | None) -> list[str] | None:
    """Label names in class-index order, or None when the map is not 0..N-1."""
    if not labels:
        return None
    names = sorted(labels, key=labels.get)
    if [labels[n] for n in names] != list(range(len(names))):
        log.warning("label map is not 0..N-1; exporting labels as strings")
        return None
    return names


def hf_features(labels: dict[str, int] | None, points: int | None):
    """The Features of an exported split (``points`` None = sequences differ in point count)."""
    from datasets import Array3D, ClassLabel, Features, List, Value

    names = _class_names(labels)
    landmarks = (Array3D(shape=(None, points, 3), dtype="float32") if points is not None
                 else List(List(List(Value("float32")))))
    return Features({
        "key": Value("string"), "landmarks": landmarks,
        "label": ClassLabel(names=names) if names else Value("string"),
        "text": Value("string"), "participant": Value("string"), "fold": Value("string"),
        "layout": Value("string"), "source": Value("string"), "frames": Value("int32"), "fps": Value("float64"),
        # provenance (null where the store does not know it)
        "source_file": Value("string"), "width": Value("int32"), "height": Value("int32"), "depth": Value("int32"),
        "units": Value("string"), "extractor": Value("string"), "extractor_version": Value("string"),
        "extractor_settings": Value("string"),
    })


def _rows(store: Store, split_of_key: dict[str, str]):
    """(split, row) for every sample of the store in store order (a key in no split is left out)."""
    for batch in store.iter_batches():
        meta = batch.select(list(METADATA_COLUMNS)).to_pylist()
        for m, lm in zip(meta, table_landmarks(batch)):
            split = split_of_key.get(m["key"])
            if split is not None:
                yield split, {**sample_record(m, split), "landmarks": lm}


def _split_rows(store_path: str, keys: tuple[str, ...], split: str):
    """The rows of one split, streamed from the store in store order."""
    for _, row in _rows(Store(store_path), dict.fromkeys(keys, split)):
        yield row


# Examples each split's writer holds before writing a record batch, shared by all splits so the
# buffered total stays near ``from_generator``'s 1,000 (a buffered example pins its store batch).
WRITER_EXAMPLES = 1000


def _write_splits(store: Store, split_of_key: dict[str, str], splits: list[str], features, cache: Path) -> dict[str, Path]:
    """One pass over the store: every sample, encoded, appended to its split's Arrow file in store
    order (the order ``from_generator`` over the store gave each split). Returns split -> file."""
    from datasets.arrow_writer import ArrowWriter

    cache.mkdir(parents=True, exist_ok=True)
    files = {s: cache / f"{s}.arrow" for s in splits}
    per_split = max(1, WRITER_EXAMPLES // max(1, len(splits)))
    writers = {s: ArrowWriter(features=features, path=str(files[s]), writer_batch_size=per_split) for s in splits}
    try:
        for split, row in _rows(store, split_of_key):
            writers[split].write(features.encode_example(row))
        for w in writers.values():
            w.finalize()
    finally:
        for w in writers.values():
            w.close()
    return files


def export_hf(store: Store | str | Path, out: str | Path, folds: int = FOLD_DEFAULTS.folds,
              test_fraction: float = FOLD_DEFAULTS.test_fraction, seed: int = FOLD_DEFAULTS.seed, overwrite: bool = False, progress: Callable[[str], None] | None = None):
    """Write the store as a DatasetDict (``fold0``.. ``test``) with ``save_to_disk``; returns it."""
    from datasets import Dataset, DatasetDict, DatasetInfo, NamedSplit, disable_progress_bars

    store = store if isinstance(store, Store) else Store(store)
    out = Path(out)
    outputs.check_apart(out, [store.path])
    outputs.check_writable(out, EXPORT_WHAT, EXPORT_MARKERS, overwrite=overwrite)  # replaced once complete
    plan = assign_store_folds(store, folds=folds, test_fraction=test_fraction, seed=seed)
    points = store.metadata(("points",)).column("points").unique().to_pylist()
    features = hf_features(store.labels, points[0] if len(points) == 1 else None)
    work = out.with_name(out.name + ".tmp")
    outputs.check_apart(work, [store.path])
    outputs.replace(work, "an unfinished export-hf", ("cache", "dataset"))  # a killed run's leftovers
    cache = work / "cache"
    disable_progress_bars()
    files = _write_splits(store, plan.split_of_key, list(plan.splits), features, cache)
    splits = {}
    for s in plan.splits:
        if progress is not None:
            progress(s)
        splits[s] = Dataset.from_file(str(files[s]), info=DatasetInfo(features=features), split=NamedSplit(s))
    dd = DatasetDict(splits)
    saved = work / "dataset"
    dd.save_to_disk(str(saved))
    (saved / SLTDATA_FILE).write_text(json.dumps({
        "format": "sltdata-hf", "version": 1, "folds": plan.folds, "seed": seed, "test_fraction": test_fraction,
        "stratified": plan.stratified, "participants": plan.participants, "labels": store.labels,
        "characters": store.characters, "counts": plan.counts(),
        "store": {"recipe": (store.meta.get("recipe") or {}).get("name"), "sequences": len(store)},
    }, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)  # an export (checked above), or empty
    os.replace(saved, out)
    shutil.rmtree(work)
    from datasets import load_from_disk

    return load_from_disk(str(out))


# ---------------------------------------------------------------------------------------------- card

def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def _describe(path: Path) -> dict:
    """What a pushable directory holds: kind, splits with counts and bytes, maps, build facts."""
    if (path / INDEX_FILE).is_file():
        idx = ShardIndex.open(path)
        return {"kind": "shards", "splits": {s: {"num_examples": v["samples"], "num_bytes": v["bytes"]}
                                             for s, v in idx.splits.items()},
                "data_files": {s: f"{s}-*.tar" for s in idx.splits}, "facts": idx.data,
                "upload": ["*.tar", "*" + MEMBER_SUMS_SUFFIX, INDEX_FILE, CARD_FILE]}
    if (path / "dataset_dict.json").is_file() and (path / SLTDATA_FILE).is_file():
        facts = json.loads((path / SLTDATA_FILE).read_text(encoding="utf-8"))
        splits = {}
        for s, n in facts["counts"].items():
            size = sum(p.stat().st_size for p in (path / s).glob("*.arrow"))
            splits[s] = {"num_examples": n, "num_bytes": size}
        return {"kind": "hf", "splits": splits, "data_files": {s: f"{s}/*.arrow" for s in splits}, "facts": facts,
                "upload": ["*.json", "*/*.arrow", "*/*.json", CARD_FILE]}
    raise SltdataError(f"{path}: neither a shard directory ({INDEX_FILE}) nor an `sltdata export-hf` output")


def dataset_card(path: str | Path, repo_id: str, license: str = "other") -> str:
    """README.md for the Hub: YAML front matter (configs and splits, counts, license) and a body that
    says what the files hold and how they were built."""
    from sltdata import __version__

    path = Path(path)
    d = _describe(path)
    facts = d["facts"]
    total = sum(v["num_examples"] for v in d["splits"].values())
    front = {
        "license": license, "pretty_name": repo_id.split("/")[-1],
        "tags": ["sign-language", "pose-estimation", "mediapipe", "landmarks", "sltdata"],
        "size_categories": [_size_category(total)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": p} for s, p in d["data_files"].items()]}],
        "dataset_info": {"splits": [{"name": s, **v} for s, v in d["splits"].items()],
                         "dataset_size": sum(v["num_bytes"] for v in d["splits"].values())},
    }
    if d["kind"] == "hf":
        from datasets import load_from_disk

        feats = load_from_disk(str(path))[next(iter(d["splits"]))].features
        front["dataset_info"]["features"] = feats._to_yaml_list()
    labels, characters = facts.get("labels"), facts.get("characters")
    rows = "\n".join(f"| {s} | {v['num_examples']} | {v['num_bytes']:,} |" for s, v in d["splits"].items())
    if d["kind"] == "shards":
        layout = ("WebDataset tars named `{split}-{index:06d}.tar`. Each sample is `KEY.landmarks.npy` "
                  "(float32 (frames, points, 3), `np.save` format, loads with `allow_pickle=False`; NaN = "
                  "undetected point) and `KEY.json` (`key`, `label`, `text`, `participant`, `fold`, `layout`, "
                  "`source`, `frames`, `fps`, and the provenance `source_file`, `width`, `height`, `depth`, `units`, "
                  "`extractor`, `extractor_version`, `extractor_settings`). `index.json` lists every shard with its sample count, bytes "
                  "and sha256, the fold of every participant, and the label/character maps.")
        if facts.get("transform"):
            layout += (" These shards hold transformed features (T, D) and a frame mask `KEY.mask.npy` "
                       "instead of raw landmarks; the transform config is in `index.json`.")
        load = (f'ds = load_dataset("{repo_id}")   # webdataset builder; or sltdata.loader.loader on a local copy')
    else:
        layout = ("A `DatasetDict` saved with `save_to_disk`: `landmarks` is `Array3D(shape=(None, P, 3), "
                  "float32)` (frames vary; NaN = undetected point), `label` a `ClassLabel` when the source has "
                  "a label map, plus `key`, `text`, `participant`, `fold`, `layout`, `source`, `frames`, `fps` and the "
                  "provenance `source_file`, `width`, `height`, `depth`, `units`, `extractor`, `extractor_version`, "
                  "`extractor_settings`.")
        load = f'ds = load_dataset("{repo_id}")'
    body = f"""# {repo_id.split('/')[-1]}

Sign-language pose landmarks (MediaPipe Holistic `holistic-543` order: face 0-467, left hand 468-488,
pose 489-521, right hand 522-542), packaged by [sltdata](https://github.com/) {__version__}.

## Splits

Folds are grouped by participant (no signer is in two folds){' and stratified by label' if facts.get('stratified') else ''};
`test`, when present, holds out whole participants. Train on some folds, validate on another.

| split | sequences | bytes |
|---|---|---|
{rows}

Participants: {len(facts.get('participants') or {})}. Classes: {len(labels) if labels else 0}. Characters: {len(characters) if characters else 0}.

## Layout

{layout}

## How it was built

`sltdata shard`/`export-hf` from a `{(facts.get('store') or {}).get('recipe')}` store with
{facts.get('folds')} folds, test fraction {facts.get('test_fraction')}, seed {facts.get('seed')}; the same store and seed
give byte-identical shards.

```python
from datasets import load_dataset
{load}
```

## License

`{license}` -- check the license of the source dataset before redistributing.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body


# ---------------------------------------------------------------------------------------------- push

def push(path: str | Path, repo_id: str, private: bool = False, license: str = "other") -> str:
    """Upload a shard directory or export to ``repo_id`` (a dataset repo) with a generated card;
    returns the commit URL. Raises HubError with one line when offline, unauthenticated or refused."""
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    path = Path(path)
    d = _describe(path)
    if huggingface_hub.get_token() is None:
        raise HubError("push: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
    if d["kind"] == "shards":  # never publish a damaged shard: the same check as `sltdata verify`
        report = verify_shards(path)
        if not report.ok:
            raise ShardError(f"push: {path} fails `sltdata verify` ({report.problems[0]}); nothing was uploaded")
    card = dataset_card(path, repo_id, license=license)
    tmp = path / (CARD_FILE + ".tmp")
    tmp.write_text(card, encoding="utf-8")
    os.replace(tmp, path / CARD_FILE)
    api = HfApi()  # token resolved by huggingface_hub itself from the env or the saved login
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(path), repo_type="dataset",
                                 allow_patterns=d["upload"], ignore_patterns=["*.tmp", "*/cache/*"],
                                 commit_message=f"sltdata push ({d['kind']})")
    except OfflineModeIsEnabled:
        raise HubError("push: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE); nothing was uploaded") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise HubError(f"push: the Hub refused {repo_id} (HTTP {status}); check the repo id and your access") from None
    except OSError as e:  # connection refused, DNS failure
        raise HubError(f"push: cannot reach the Hugging Face Hub ({type(e).__name__}); nothing was uploaded") from None
    except json.JSONDecodeError:  # a 200 whose body is not the Hub's JSON: a proxy, a captive portal
        raise HubError(f"push: {api.endpoint} answered with something that is not the Hub's JSON (a proxy or "
                       "a wrong HF_ENDPOINT?); the upload did not complete") from None
    except Exception as e:
        if _is_network_error(e):
            raise HubError(f"push: cannot reach the Hugging Face Hub ({type(e).__name__}); nothing was uploaded") from None
        raise
    return str(getattr(info, "commit_url", info))


def _is_network_error(e: Exception) -> bool:
    """Connection/DNS/timeout errors of whichever HTTP client huggingface_hub uses (httpx2, httpx, requests)."""
    import importlib

    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests.exceptions", "ConnectionError")):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(e, cls):
            return True
    return False
