"""Issue 12, faults: no command destroys its input, a checkpoint is one unit, a full or read-only
disk is one line and a re-run goes on, one writer per output, a garbage Hub answer is one line."""

import errno
import hashlib
import http.server
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sltdata.cli import main
from sltdata.ingest import ingest
from sltdata.outputs import LOCK_FILE, OutputError
from sltdata.shards import write_shards
from sltdata.synth import synth

ROOT = Path(__file__).resolve().parent.parent


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` (relative name -> sha256), and every directory (-> "dir")."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def dataset(tmp_path):
    """A small kaggle-islr dataset as the publisher ships it, in ``tmp_path/data/asl``."""
    return synth("kaggle-islr", tmp_path / "data" / "asl", sequences=12, classes=3, participants=3)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults-store")
    raw = synth("kaggle-islr", work / "raw", sequences=24, classes=3, participants=4)
    ingest("kaggle-islr", raw, work / "store")
    return work / "store"


@pytest.fixture(scope="module")
def small_shards(small_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults-shards") / "shards"
    write_shards(small_store, out, folds=3, test_fraction=0.0, max_samples_per_shard=5)
    return out


# ------------------------------------------------------------------ 2. no command destroys its input

@pytest.mark.parametrize("where, says", [("same", "is the input"), ("parent", "contains the input"),
                                         ("inside", "lies inside the input")])
def test_ingest_overwrite_onto_its_own_dataset_is_refused_and_deletes_nothing(dataset, capsys, where, says):
    out = {"same": dataset, "parent": dataset.parent, "inside": dataset / "store"}[where]
    before = tree(dataset.parent)
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(out), "--overwrite"]) == 2
    assert error_lines(capsys) == [f"error: {out}: {says} {dataset}; choose "
                                   + ("an --out outside it" if where == "inside" else "another --out")]
    assert tree(dataset.parent) == before


def test_an_output_that_is_a_symlink_to_the_input_is_the_input(dataset, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(dataset, target_is_directory=True)
    before = tree(dataset)
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(link), "--overwrite"]) == 2
    assert error_lines(capsys) == [f"error: {link}: is the input {dataset}; choose another --out"]
    assert tree(dataset) == before


def test_overwrite_refuses_a_directory_that_is_not_a_store(dataset, tmp_path, capsys):
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "chapter1.tex").write_text("irreplaceable")
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(theirs), "--overwrite"]) == 2
    assert error_lines(capsys) == [f"error: {theirs}: is not an sltdata store (no store.json, plan.json), so "
                                   "sltdata will not delete it; choose another --out"]
    assert tree(theirs) == {"chapter1.tex": hashlib.sha256(b"irreplaceable").hexdigest()}


def test_not_empty_error_suggests_overwrite_only_where_it_would_act(dataset, tmp_path, capsys):
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "chapter1.tex").write_text("irreplaceable")
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(theirs)]) == 2
    assert error_lines(capsys) == [f"error: {theirs}: exists, is not empty and is not an sltdata store; "
                                   "choose another --out (--overwrite only replaces an sltdata store)"]
    store = tmp_path / "store"
    ingest("kaggle-islr", dataset, store)
    (store / "plan.json").write_text(json.dumps({"fingerprint": "another ingest"}))
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(store)]) == 2
    assert error_lines(capsys) == [f"error: {store}: holds a different ingest; choose another --out or pass "
                                   "--overwrite"]


def test_overwrite_replaces_a_store_with_the_same_bytes(dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ingest("kaggle-islr", dataset, a)
    ingest("kaggle-islr", dataset, b)
    (b / "part-000000.json").write_text("stale")
    ingest("kaggle-islr", dataset, b, overwrite=True)
    assert tree(b) == tree(a)


def test_shard_into_or_around_its_store_is_refused(small_store, capsys):
    before = tree(small_store.parent)
    for out, says in ((small_store, "is the input"), (small_store.parent, "contains the input")):
        assert main(["shard", str(small_store), "--out", str(out), "--overwrite", "--folds", "3"]) == 2
        assert error_lines(capsys) == [f"error: {out}: {says} {small_store}; choose another --out"]
    assert tree(small_store.parent) == before


def test_export_hf_overwrite_refuses_what_is_not_an_export(small_store, tmp_path, capsys):
    before = tree(small_store.parent)
    assert main(["export-hf", str(small_store), "--out", str(small_store.parent), "--overwrite", "--folds", "3"]) == 2
    assert error_lines(capsys) == [f"error: {small_store.parent}: contains the input {small_store}; "
                                   "choose another --out"]
    assert tree(small_store.parent) == before
    theirs = tmp_path / "photos"
    theirs.mkdir()
    (theirs / "cat.jpg").write_bytes(b"\xff\xd8")
    assert main(["export-hf", str(small_store), "--out", str(theirs), "--overwrite", "--folds", "3"]) == 2
    assert error_lines(capsys) == [f"error: {theirs}: is not an export-hf output (no sltdata.json), so sltdata will "
                                   "not delete it; choose another --out"]
    assert (theirs / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_export_hf_refuses_a_leftover_work_directory_that_is_not_its_own(small_store, tmp_path, capsys):
    sibling = tmp_path / "export.tmp"
    sibling.mkdir()
    (sibling / "notes.txt").write_text("mine")
    assert main(["export-hf", str(small_store), "--out", str(tmp_path / "export"), "--folds", "3"]) == 2
    assert error_lines(capsys) == [f"error: {sibling}: is not an unfinished export-hf (no cache, dataset), so "
                                   "sltdata will not delete it; choose another --out"]
    assert (sibling / "notes.txt").read_text() == "mine"


def test_extract_into_its_video_folder_is_refused(tmp_path):
    from sltdata.extract import extract

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"not really")
    with pytest.raises(OutputError, match=re.escape(f"{videos}: is the input {videos}; choose another --out")):
        extract(videos, videos)
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path}: contains the input {videos}")):
        extract(videos, tmp_path)
    assert tree(videos) == {"a.mp4": hashlib.sha256(b"not really").hexdigest()}


def test_train_into_or_beside_its_shards_is_refused(small_shards, tmp_path, capsys):
    pytest.importorskip("torch")
    before = tree(small_shards)
    for out, says in ((small_shards, "is the input"), (small_shards / "run", "lies inside the input")):
        assert main(["train", "--data", str(small_shards), "--out", str(out), "--config", "islr-tiny"]) == 2
        assert error_lines(capsys)[-1].startswith(f"error: {out}: {says} {small_shards}")
    assert tree(small_shards) == before
    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "todo.txt").write_text("x")
    assert main(["train", "--data", str(small_shards), "--out", str(theirs), "--config", "islr-tiny"]) == 2
    assert error_lines(capsys)[-1] == (f"error: {theirs}: exists, is not empty and is not a run directory "
                                       "(no config.yaml); choose another --out")


def test_quickstart_refuses_to_delete_a_directory_it_did_not_make(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export X=1")
    assert main(["quickstart", "--out", str(home), "--sequences", "8"]) == 2
    assert error_lines(capsys) == [f"error: {home}: is not a quickstart directory (it holds more than raw, "
                                   "runs, shards, store), so sltdata will not delete it; choose another --out"]
    assert (home / ".bashrc").read_text() == "export X=1"


# ------------------------------------------------------------------ 3. a checkpoint is one unit

def run_config(path: Path) -> Path:
    """The bundled islr-tiny recipe, two epochs, a checkpoint every 2 steps, written as a YAML file."""
    import yaml

    from sltdata.testing.train import tiny_islr_config

    cfg = tiny_islr_config(train={"epochs": 2, "checkpoint_every": 2}, data={"batch_size": 4})
    path.write_text(yaml.safe_dump(cfg))
    return path


def pair_steps(run: Path) -> tuple[int, int]:
    """The step the ``last`` weights were saved at, and the step of the ``last`` state."""
    import torch
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "last.safetensors"), "pt") as f:
        weights_step = int(f.metadata()["global_step"])
    state = torch.load(run / "checkpoints" / "last.state.pt", weights_only=True)
    return weights_step, int(state["global_step"])


def test_full_disk_on_the_state_write_keeps_the_last_checkpoint_whole_and_resume_goes_on(
        small_shards, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    import sltdata.train.checkpoint as ckpt

    run, cfg = tmp_path / "run", run_config(tmp_path / "cfg.yaml")
    real, saved = ckpt.save_state, []

    def second_state_write_fills_the_disk(state, path):
        if saved:
            Path(path).with_name(Path(path).name + ".tmp").write_bytes(b"\0" * 10)  # partial, then full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(state, path)
        saved.append(state["global_step"])

    with monkeypatch.context() as m:
        m.setattr(ckpt, "save_state", second_state_write_fills_the_disk)
        args = ["train", "--data", str(small_shards), "--out", str(run), "--config", str(cfg), "--val-fold", "0"]
        assert main(args) == 2
    assert error_lines(capsys)[-1] == (f"error: {run / 'checkpoints' / 'last.state.pt'}: No space left on device; "
                                       "free space or fix permissions, then re-run with --resume to continue")
    # the checkpoint on disk is the first one, whole: its weights beside its state, no half-written file
    assert pair_steps(run) == (saved[0], saved[0])
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == saved[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.json", "last.safetensors", "last.state.pt"]
    assert main(["train", "--data", str(small_shards), "--out", str(run), "--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert pair_steps(run) == (summary["global_step"], summary["global_step"])
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == summary["global_step"]


@pytest.fixture(scope="module")
def finished_run(small_shards, tmp_path_factory):
    pytest.importorskip("torch")
    from sltdata.train.runs import train

    work = tmp_path_factory.mktemp("finished-run")
    run = work / "run"
    train("islr", small_shards, run, str(run_config(work / "cfg.yaml")), val_fold=0, epochs=1)
    return run


def test_resume_refuses_weights_that_are_not_the_manifests(finished_run, small_shards, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    weights = run / "checkpoints" / "last.safetensors"
    step = pair_steps(run)[1]
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1  # weights of another step, as the old two-write checkpoint could leave
    save_file(tensors, str(weights), metadata={"global_step": str(step)})
    assert main(["train", "--data", str(small_shards), "--out", str(run), "--resume"]) == 2
    assert error_lines(capsys)[-1] == (f"error: {weights}: is not the file last.json names for step {step} (the "
                                       "checkpoint's weights and state are not one unit); cannot resume this run, "
                                       "start a new one")


def test_resume_without_a_manifest_refuses_weights_of_another_step(finished_run, small_shards, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "checkpoints" / "last.json").unlink(missing_ok=True)  # a run from before manifests
    weights = run / "checkpoints" / "last.safetensors"
    step = pair_steps(run)[1]
    save_file(load_file(str(weights)), str(weights), metadata={"global_step": str(step + 3)})
    assert main(["train", "--data", str(small_shards), "--out", str(run), "--resume"]) == 2
    assert error_lines(capsys)[-1] == (f"error: {weights}: weights of step {step + 3} beside a state of step {step} "
                                       "(not one checkpoint); cannot resume this run, start a new one")


# ------------------------------------------------------------------ 5. disk faults: one line, and a re-run goes on

def cli(args: list[str], fsize: int | None = None) -> subprocess.CompletedProcess:
    """``sltdata ARGS`` in a child process, its file size capped at ``fsize`` bytes (a full disk:
    writes past it fail with EFBIG, as the kernel's RLIMIT_FSIZE does)."""
    def cap():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-c", "import sys; from sltdata.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, env=env, preexec_fn=cap, timeout=300)


def test_ingest_on_a_full_disk_is_one_line_and_a_rerun_finishes_like_a_clean_run(dataset, tmp_path):
    out, clean = tmp_path / "store", tmp_path / "clean"
    ingest("kaggle-islr", dataset, clean, part_size=4)
    args = ["ingest", "kaggle-islr", str(dataset), "--out", str(out), "--part-size", "4", "--workers", "1"]
    failed = cli(args, fsize=20_000)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        re.escape(f"error: {out}") + r"(/part-\d{6}\.parquet(\.tmp)?)?"
        + re.escape(": File too large; free space or fix permissions, then re-run the same command to continue"),
        lines[0]), lines
    assert not (out / "store.json").exists() and not (out / LOCK_FILE).exists()
    again = cli(args)
    assert again.returncode == 0, again.stderr
    assert tree(out) == tree(clean)


def test_shard_on_a_full_disk_is_one_line_and_a_rerun_finishes_like_a_clean_run(small_store, tmp_path):
    out, clean = tmp_path / "shards", tmp_path / "clean"
    write_shards(small_store, clean, folds=3, max_samples_per_shard=5)
    args = ["shard", str(small_store), "--out", str(out), "--folds", "3", "--max-samples-per-shard", "5"]
    failed = cli(args, fsize=50_000)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.strip().splitlines() == [
        f"error: {out}: File too large; free space or fix permissions, then re-run the same command to continue"]
    assert not (out / "index.json").exists() and not (out / LOCK_FILE).exists()
    again = cli(args)
    assert again.returncode == 0, again.stderr
    assert tree(out) == tree(clean)


def test_read_only_output_is_one_line_naming_the_file(dataset, tmp_path, monkeypatch, capsys):
    import sltdata.ingest as ingest_module

    out = tmp_path / "store"
    real = ingest_module.write_json_atomic

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(ingest_module, "write_json_atomic", read_only)
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(out)]) == 2
    assert error_lines(capsys) == [f"error: {out / 'plan.json'}: Read-only file system; free space or fix "
                                   "permissions, then re-run the same command to continue"]
    monkeypatch.setattr(ingest_module, "write_json_atomic", real)
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(out)]) == 0


def test_an_os_error_on_a_path_is_one_line_and_one_without_a_path_stays_a_traceback(monkeypatch, capsys, tmp_path):
    import sltdata.cli.data as data_cli

    def denied(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(data_cli, "run_ingest", denied)
    assert main(["ingest", "kaggle-islr", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert error_lines(capsys) == [f"error: {tmp_path / 'x'}: Permission denied"]

    def bug(*a, **kw):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(data_cli, "run_ingest", bug)
    with pytest.raises(OSError, match="Input/output error"):
        main(["ingest", "kaggle-islr", str(tmp_path), "--out", str(tmp_path / "o")])


# ------------------------------------------------------------------ 6. one writer per output

def write_lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "sltdata ingest",
                                             "started": "2026-12-01T10:00:00+0000"}))


def test_second_shard_run_fails_at_once_naming_the_live_holder(small_store, tmp_path, capsys):
    out = tmp_path / "shards"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from sltdata.outputs import acquire, release\n"
         f"lock = acquire(Path({str(out)!r}), 'sltdata shard'); print('locked', flush=True); sys.stdin.readline(); "
         "release(lock)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = json.loads((out / LOCK_FILE).read_text())["started"]
        assert main(["shard", str(small_store), "--out", str(out), "--folds", "3"]) == 2
        assert error_lines(capsys) == [
            f"error: {out}: locked by another run, sltdata shard (pid {holder.pid} on {socket.gethostname()}, since "
            f"{started}); wait for it to finish, or remove {out / LOCK_FILE} if that process is not running"]
        assert not (out / "index.json").exists()
    finally:
        holder.communicate("\n", timeout=60)
    assert main(["shard", str(small_store), "--out", str(out), "--folds", "3"]) == 0
    assert not (out / LOCK_FILE).exists()


def test_ingest_into_an_output_locked_by_a_live_process_fails_naming_it(dataset, tmp_path, capsys):
    out = tmp_path / "store"
    write_lock(out, os.getppid())
    assert main(["ingest", "kaggle-islr", str(dataset), "--out", str(out)]) == 2
    assert error_lines(capsys) == [
        f"error: {out}: locked by another run, sltdata ingest (pid {os.getppid()} on {socket.gethostname()}, since "
        f"2026-12-01T10:00:00+0000); wait for it to finish, or remove {out / LOCK_FILE} if that process is not running"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_a_stale_lock_is_taken_over_with_a_warning(dataset, tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "store"
    write_lock(out, dead.pid)
    with caplog.at_level("WARNING", logger="sltdata.outputs"):
        result = ingest("kaggle-islr", dataset, out)
    assert result.stored == 12
    assert [r.getMessage() for r in caplog.records] == [
        f"{out}: taking over a stale lock of pid {dead.pid} on {socket.gethostname()} (that process is gone)"]
    assert not (out / LOCK_FILE).exists()


# ------------------------------------------------------------------ 7. a garbage Hub answer is one line

class _Garbage(http.server.BaseHTTPRequestHandler):
    """A server that answers every request 200 with a body that is not JSON (a captive portal)."""

    def _answer(self):
        if n := int(self.headers.get("Content-Length") or 0):
            self.rfile.read(n)
        body = b"<html>welcome to the hotel wifi</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args):
        pass


def test_push_with_a_garbage_200_from_the_hub_is_one_line(small_shards, tmp_path, monkeypatch, capsys):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_sltdataTestTokenDoNotLeak123")
        d = tmp_path / "sh"
        shutil.copytree(small_shards, d)
        assert main(["push", str(d), "someone/islr"]) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert error_lines(capsys) == [f"error: push: {endpoint} answered with something that is not the Hub's JSON (a "
                                   "proxy or a wrong HF_ENDPOINT?); the upload did not complete"]
