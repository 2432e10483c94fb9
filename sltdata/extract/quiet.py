"""Keep MediaPipe's native log lines off the terminal, and let everything else through.

mediapipe 0.10.21 logs through absl's C++ logging and TF Lite's own logger, straight to file
descriptor 2: ``GLOG_minloglevel`` and ``TF_CPP_MIN_LOG_LEVEL`` do not reach them (measured: the same
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU", "WARNING: All log messages before
absl::InitializeLog() ..." and one "W0000 ... inference_feedback_manager.cc" line per graph thread
appear with and without them). So while extraction runs, fd 2 is a pipe read by a thread that drops
exactly those lines (absl/glog INFO and WARNING, TF Lite INFO) and forwards the rest, errors
included, to the real stderr; Python's ``sys.stderr`` (the progress bar) writes to the real stderr
directly. Worker processes inherit the pipe, so their native lines are filtered the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from typing import Iterator

# absl/glog prefix "I0000 00:00:..." / "W1128 21:14:46..." (INFO, WARNING; E and F pass), TF Lite's
# "INFO: ..." and absl's one-time notice about logging before InitializeLog.
NATIVE_NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d\d|INFO: |WARNING: All log messages before absl::InitializeLog)")


def _forward(read_fd: int, out_fd: int) -> None:
    """Copy the pipe to ``out_fd`` line by line, less the noise; both fds are this thread's to close."""
    try:
        with open(read_fd, "rb") as pipe:
            for line in pipe:
                if not NATIVE_NOISE.match(line):
                    os.write(out_fd, line)
    finally:
        os.close(out_fd)


@contextlib.contextmanager
def native_log_filter(enabled: bool = True) -> Iterator[None]:
    """Within the block, native lines matching ``NATIVE_NOISE`` written to fd 2 are dropped."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    real_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    saved_stderr = sys.stderr
    if _fileno(sys.stderr) == 2:
        sys.stderr = open(os.dup(real_fd), "w", buffering=1, encoding=saved_stderr.encoding or "utf-8",
                          errors="backslashreplace")
    forwarder = threading.Thread(target=_forward, args=(read_fd, os.dup(real_fd)), name="native-log-filter",
                                 daemon=True)
    forwarder.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        if sys.stderr is not saved_stderr:
            sys.stderr.close()
            sys.stderr = saved_stderr
        os.dup2(real_fd, 2)  # the pipe's last write end closes: the forwarder sees EOF and ends
        forwarder.join(timeout=5)
        os.close(real_fd)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
