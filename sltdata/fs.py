"""Paths are URLs: the one place that turns ``s3://``, ``gs://``, ``hf://datasets/...``, ``file://`` or
a local path into something to open (DESIGN.md, "Where the shape goes next").

Two shapes, chosen so the commands keep their local code (and their local bytes) unchanged:

- **Reading** goes through :func:`as_path`: a local ``Path`` for a local path, else a :class:`RemotePath`
  (an fsspec filesystem plus a path, with the few ``Path`` methods the readers use: ``/``, ``open``,
  ``is_file``, ``read_bytes``, ``iterdir``...). A shard or a store part on S3 is streamed through
  ``fs.open(url, "rb")``; nothing is copied first. pyarrow reads through :func:`arrow_source`.
- **Writing** a directory goes through :func:`output_dir`: for a remote URL the command writes into a
  local staging directory (what a re-run needs is pulled from the remote first) and every file it
  commits (``os.replace`` of a finished temp file; writers call :func:`committed` after it) is put to
  its final key in **one PUT of the finished file**: an object store has no rename, and a single PUT is
  atomic there (a reader sees the old object or the whole new one, never a part). A kill leaves every
  committed file on the remote, so the re-run resumes as a local one does; at the end the remote is
  made to hold exactly what the staging directory holds, the marker files (``store.json``,
  ``index.json``) last. No lock is taken on an object store (one writer per URL is the user's job).
- A remote **input directory** that a reader needs as local files (an ingest's dataset root, extract's
  videos) is mirrored in a temporary directory by :func:`input_dir`: what the driver reads (manifests,
  label maps) is downloaded, and each landmark file or video is an empty placeholder, so planning
  lists and checks them as local files. A unit asks :func:`local_input` for each input it reads,
  which fetches it from the remote to the same path: the data moves as the units run, and on a Ray
  cluster each node fetches only what its units read (a worker on another node has no directory at
  all; the files it reads arrive the same way). :func:`input_files` pulls only the files
  a reader names (a run's config and one checkpoint, not its optimizer states); :func:`output_file`
  writes one file (an exported model) locally and puts it when it is finished.

Credentials and endpoints come from the environment (s3fs/botocore read ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``...) and from ``--storage-option KEY=VALUE`` (:func:`set_storage_options`);
messages name a URL through :func:`display` (no query string, no user:password).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

from sltdata.errors import ConfigError

# Files whose presence says "this output is finished": uploaded after everything else.
MARKERS = ("store.json", "index.json", "manifest.json")
_LOCAL_ONLY = (".sltdata.lock",)  # never mirrored (a lock means nothing on an object store)

_options: dict[str, dict] = {}  # protocol -> storage options from --storage-option
_mirrors: dict[str, tuple[str, dict]] = {}  # staging dir -> (remote URL, storage options)
_inputs: dict[str, tuple[str, dict]] = {}  # input staging dir -> (remote URL, storage options)
_fetching: dict[str, threading.RLock] = {}  # input files being fetched by this process
_lock = threading.Lock()


def is_remote(path) -> bool:
    """Whether ``path`` names something fsspec opens that is not a local file (``file://`` is local)."""
    if isinstance(path, RemotePath):
        return True
    s = str(path)
    return "://" in s and not s.startswith("file://")


def local(path) -> Path:
    """A local path (``file://`` stripped)."""
    s = str(path)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def display(url) -> str:
    """The URL as messages may show it: no credentials, no query string."""
    s = str(url)
    if not is_remote(s):
        return s
    u = urlsplit(s)
    return urlunsplit((u.scheme, u.hostname or "", u.path, "", ""))


def set_storage_options(pairs: list[str]) -> None:
    """``KEY=VALUE`` strings from ``--storage-option`` (values parsed as JSON when they are: numbers,
    true/false, objects), given to every remote filesystem. ``client_kwargs.endpoint_url=...`` sets
    a nested key."""
    import json

    opts: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--storage-option {pair.split('=')[0]!r}: expected KEY=VALUE")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        *parents, last = key.split(".")
        d = opts
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = parsed
    _options.clear()
    _options["*"] = opts


def storage_options() -> dict:
    return dict(_options.get("*", {}))


def url_to_fs(url: str):
    """(fsspec filesystem, path inside it) for a URL, with the storage options."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(str(url), **storage_options())
    except ImportError as e:  # s3fs / gcsfs missing: one line naming what to install
        hint = " (pip install 'sltdata[s3]')" if str(url).startswith(("s3://", "s3a://")) else ""
        raise ConfigError(f"{display(url)}: {str(e).splitlines()[0]}{hint}") from None
    except ValueError as e:
        raise ConfigError(f"{display(url)}: {e}") from None


class RemotePath:
    """A file or directory on an fsspec filesystem, with the ``Path`` methods the readers use."""

    def __init__(self, fs, path: str, url: str):
        self.fs, self.path, self.url = fs, path.rstrip("/"), url.rstrip("/")

    def __truediv__(self, name) -> "RemotePath":
        name = str(name).strip("/")
        return RemotePath(self.fs, f"{self.path}/{name}", f"{self.url}/{name}")

    def __str__(self) -> str:
        return display(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({display(self.url)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: "RemotePath") -> bool:
        return self.url < other.url

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.fs, self.path.rsplit("/", 1)[0], self.url.rsplit("/", 1)[0])

    def open(self, mode: str = "rb", **kwargs):
        return self.fs.open(self.path, mode, **kwargs)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def is_dir(self) -> bool:
        return self.fs.isdir(self.path)

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def iterdir(self) -> Iterator["RemotePath"]:
        for p in self.fs.ls(self.path, detail=False):
            yield self / PurePosixPath(p).name

    def glob(self, pattern: str) -> Iterator["RemotePath"]:
        for p in self.fs.glob(f"{self.path}/{pattern}"):
            yield self / PurePosixPath(p).name


def as_path(path) -> Path | RemotePath:
    """A local ``Path``, or a :class:`RemotePath` for a remote URL."""
    if isinstance(path, (Path, RemotePath)):
        return path
    if not is_remote(path):
        return local(path)
    fs, p = url_to_fs(str(path))
    return RemotePath(fs, p, str(path))


def arrow_source(path):
    """What pyarrow's readers take for ``path``: the local path string, or an fsspec file object
    (opened for random access: Parquet reads its footer first)."""
    return path.open("rb") if isinstance(path, RemotePath) else str(path)


def arrow_dataset_args(paths: list) -> tuple[list[str], object | None]:
    """(paths, filesystem) for ``pyarrow.dataset.dataset``: an fsspec filesystem wrapped for Arrow."""
    remote = [p for p in paths if isinstance(p, RemotePath)]
    if not remote:
        return [str(p) for p in paths], None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return [p.path for p in remote], PyFileSystem(FSSpecHandler(remote[0].fs))


# ------------------------------------------------------------------------------------------ writing


def committed(path) -> None:
    """``path`` (a file in a staging directory) is final: put it to its remote key. A no-op for a
    file of no staging directory, i.e. every local run."""
    if not _mirrors:
        return
    path = Path(path)
    for staging, (url, opts) in list(_mirrors.items()):
        if path.is_relative_to(staging):
            rel = path.relative_to(staging).as_posix()
            fs, root = _fs_with(url, opts)
            fs.put_file(str(path), f"{root}/{rel}")  # one PUT of the finished file: atomic on S3
            return


def removed(path) -> None:
    """``path`` was removed from a staging directory: remove its remote key too."""
    if not _mirrors:
        return
    path = Path(path)
    for staging, (url, opts) in list(_mirrors.items()):
        if path.is_relative_to(staging):
            fs, root = _fs_with(url, opts)
            key = f"{root}/{path.relative_to(staging).as_posix()}"
            if fs.exists(key):
                fs.rm_file(key)
            return


def _fs_with(url: str, opts: dict):
    import fsspec

    return fsspec.core.url_to_fs(url, **opts)


def mirrors() -> dict:
    """The staging directories of this process, output and input (for an engine to install in its workers)."""
    return {"mirrors": dict(_mirrors), "inputs": dict(_inputs), "options": dict(_options)}


def install(state: dict) -> None:
    """Install a driver's :func:`mirrors` in a worker process (output staging directories made if
    absent; input files are fetched by :func:`local_input` when a unit reads them)."""
    with _lock:
        _options.update(state["options"])
        _inputs.update(state.get("inputs", {}))
        for staging, target in state["mirrors"].items():
            Path(staging).mkdir(parents=True, exist_ok=True)
            _mirrors[staging] = target


def local_input(path) -> Path:
    """``path`` with its content here: fetched first when it lies in a remote input's staging directory
    (:func:`input_dir`) but is absent (a worker of a Ray cluster on another node than the driver) or
    is the empty placeholder a lazy input left for it. A folder (of video frames) gets each file it
    lacks. Files land through a temporary name, so concurrent units never see half of one. Anything
    outside a remote input is returned as it is, with no remote call."""
    path = Path(path)
    staging = _input_of(path, _current_inputs())
    if staging is None or _has_content(path):
        return path
    fs, (remote,) = _remote(staging, [path])
    if fs.isdir(remote):
        for rp in fs.find(remote):
            _fetch(fs, rp, path / PurePosixPath(rp).relative_to(remote.rstrip("/")))
    else:
        _fetch(fs, remote, path)
    return path


def _current_inputs() -> list[str]:
    with _lock:
        return list(_inputs)


def _input_of(path: Path, inputs: list[str]) -> str | None:
    """The remote input staging directory ``path`` lies in, if any."""
    return next((s for s in inputs if path.is_relative_to(s)), None)


def _remote(staging: str, paths: list[Path]):
    """(filesystem, remote path of each of ``paths``) inside the remote input staged at ``staging``."""
    with _lock:
        url, opts = _inputs[staging]
    fs, root = _fs_with(url, opts)
    return fs, [f"{root.rstrip('/')}/{p.relative_to(staging).as_posix()}" for p in paths]


def _has_content(path: Path) -> bool:
    """Whether a remote input's file is here (not absent, not the empty placeholder of a lazy input)."""
    return path.is_file() and path.stat().st_size > 0


def local_inputs(paths) -> None:
    """:func:`local_input` for many files at once (a part's landmark files): the ones to fetch come
    in one batch, whose requests s3fs runs concurrently, instead of one round trip after another."""
    inputs = _current_inputs()
    if not inputs:
        return
    batches: dict[str, list[Path]] = {}
    for path in map(Path, paths):
        staging = _input_of(path, inputs)
        if staging is not None and not _has_content(path):
            batches.setdefault(staging, []).append(path)
    for staging, wanted in batches.items():
        with _holding(wanted):  # two parts of one Fingerspelling file, on two threads: one download
            wanted = [p for p in wanted if not _has_content(p)]
            tmps = [p.with_name(f".{p.name}.{uuid.uuid4().hex}.part") for p in wanted]
            for p in wanted:
                p.parent.mkdir(parents=True, exist_ok=True)
            try:
                if wanted:
                    fs, remotes = _remote(staging, wanted)
                    fs.get(remotes, [str(t) for t in tmps])
            except (FileNotFoundError, IsADirectoryError):  # one is not a file there: fetched one at a time
                _discard(tmps)  # (a download the error cut short is never taken for a file)
                for p in wanted:
                    local_input(p)
                continue
            except BaseException:
                _discard(tmps)
                raise
            for p, t in zip(wanted, tmps):
                os.replace(t, p)


@contextmanager
def _holding(paths):
    """This process's per-file fetch locks for ``paths``, taken in one order (two batches that share
    files never wait on each other in a circle); reentrant, so a batch may fall back to _fetch."""
    keys = sorted({str(p) for p in paths})
    with _lock:
        locks = [_fetching.setdefault(k, threading.RLock()) for k in keys]
    for lock in locks:
        lock.acquire()
    try:
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
        with _lock:
            for k in keys:
                _fetching.pop(k, None)


def _discard(paths: list[Path]) -> None:
    for t in paths:
        if t.is_dir():
            shutil.rmtree(t, ignore_errors=True)
        else:
            t.unlink(missing_ok=True)


def _fetch(fs, remote: str, path: Path) -> None:
    """Put the remote file at ``path`` unless its content is there (an empty file is the content of
    an empty remote one); nothing when the remote has no such file (the reader says it is missing).
    Threads that want the same file download it once."""
    with _holding([path]):
        if _has_content(path):
            return
        try:
            size = fs.size(remote)
        except FileNotFoundError:
            return
        if size == 0 and path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        fs.get_file(remote, str(tmp))
        os.replace(tmp, path)


def check_apart(out, inputs) -> None:
    """Refuse a remote output that is, contains or lies inside a remote input (the URL form of
    ``outputs.check_apart``, which checks local paths)."""
    from sltdata.outputs import OutputError

    o = display(out).rstrip("/") + "/"
    for given in inputs:
        if not is_remote(given):
            continue
        i = display(given).rstrip("/") + "/"
        if o.startswith(i) or i.startswith(o):
            raise OutputError(f"{display(out)}: is, contains or lies inside the input {display(given)}; "
                              "choose another --out")


@contextmanager
def output_dir(url, inputs=()) -> Iterator[Path]:
    """A local directory to write the output ``url`` into. Local: the path itself, nothing else
    happens. Remote: a staging directory holding what the remote holds now (so a re-run resumes),
    every committed file put as it is committed, and the remote synced to it on success. ``inputs``:
    remote inputs the output must keep apart from."""
    if not is_remote(url):
        yield local(url)
        return
    check_apart(url, inputs)
    url = str(url).rstrip("/")
    fs, root = url_to_fs(url)
    staging = Path(tempfile.mkdtemp(prefix="sltdata-out-"))
    try:
        if fs.isdir(root):
            download_dir(url, staging)
        with _lock:
            _mirrors[str(staging)] = (url, storage_options())
        yield staging
        _sync(fs, root, staging)
    finally:
        with _lock:
            _mirrors.pop(str(staging), None)
        shutil.rmtree(staging, ignore_errors=True)


def _sync(fs, root: str, staging: Path) -> None:
    """Make ``root`` hold exactly the staging directory's files: stale keys removed, then every file
    put, markers last (so a reader that sees ``store.json`` sees the parts it names)."""
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                   if p.is_file() and p.name not in _LOCAL_ONLY and not p.name.endswith(".tmp"))
    have = {PurePosixPath(p).relative_to(root).as_posix() for p in fs.find(root)} if fs.isdir(root) else set()
    for rel in sorted(have - set(files)):
        fs.rm_file(f"{root}/{rel}")
    for rel in sorted(files, key=lambda r: (PurePosixPath(r).name in MARKERS, r)):
        fs.put_file(str(staging / rel), f"{root}/{rel}")


@contextmanager
def input_dir(url, lazy: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """A local directory holding the input directory ``url``: downloaded whole when remote, except
    the files (relative paths, ``a/b.parquet``) ``lazy`` accepts: an empty placeholder stands in for
    each (listings and existence checks see it) until a unit reads it through :func:`local_input`."""
    if not is_remote(url):
        yield local(url)
        return
    fs, root = url_to_fs(str(url))
    if not fs.isdir(root):
        from sltdata.errors import SourceError

        raise SourceError(display(url), "dataset root is not a directory")
    staging = Path(tempfile.mkdtemp(prefix="sltdata-in-"))
    try:
        if lazy is None:
            fs.get(root.rstrip("/") + "/", str(staging), recursive=True)
        else:
            download_dir(url, staging, keep=lambda rel: not lazy(rel), placeholders=True)
        with _lock:
            _inputs[str(staging)] = (str(url).rstrip("/"), storage_options())
        yield staging
    finally:
        with _lock:
            _inputs.pop(str(staging), None)
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def input_files(url, keep) -> Iterator[Path]:
    """A local directory holding the files of the remote directory ``url`` whose relative path
    (``a/b.json``) ``keep`` accepts: what a reader needs of a large directory (a run's config and one
    checkpoint, not its optimizer states and logs). Local: the directory itself."""
    if not is_remote(url):
        yield local(url)
        return
    staging = Path(tempfile.mkdtemp(prefix="sltdata-in-"))
    try:
        download_dir(url, staging, keep)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def output_file(url) -> Iterator[Path]:
    """A local path to write the output ``url`` (a file, or a directory of files) to. Local: the path
    itself. Remote: a path in a temporary directory, put to ``url`` when the block ends without error
    (a file in one PUT; a directory file by file)."""
    if not is_remote(url):
        yield local(url)
        return
    fs, key = url_to_fs(str(url))
    key = key.rstrip("/")
    staging = Path(tempfile.mkdtemp(prefix="sltdata-out-"))
    try:
        path = staging / PurePosixPath(key).name
        yield path
        if path.is_dir():
            upload_dir(path, url)
        elif path.is_file():
            fs.put_file(str(path), key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def join(base, *names) -> str | Path:
    """``base / names`` for a local path or a URL (a URL stays a string: ``Path`` folds ``s3://``)."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *(str(n).strip("/") for n in names)])
    return local(base).joinpath(*names)


def upload_dir(local_dir, url) -> None:
    """Copy a local directory to ``url``, file by file (a command writing a store or shards uses
    :func:`output_dir`, which puts each file as it is committed)."""
    fs, root = url_to_fs(str(url))
    for p in sorted(Path(local_dir).rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"{root.rstrip('/')}/{p.relative_to(local_dir).as_posix()}")


def download_dir(url, local_dir, keep=None, placeholders: bool = False) -> None:
    """Copy ``url`` into a local directory: every file, or those whose relative path (``a/b.json``)
    ``keep`` accepts; with ``placeholders`` the others are there too, empty (:func:`input_dir`)."""
    fs, root = url_to_fs(str(url))
    root = root.rstrip("/")
    for rp in fs.find(root):
        rel = PurePosixPath(rp).relative_to(root).as_posix()
        wanted = keep is None or keep(rel)
        if wanted or placeholders:
            target = Path(local_dir) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if wanted:
                fs.get_file(rp, str(target))
            else:
                target.touch()


def exists(path) -> bool:
    p = as_path(path)
    return p.exists()
