"""A real S3-protocol server for tests: moto's ``ThreadedMotoServer`` on 127.0.0.1, with the endpoint
and (fake) keys in the standard environment, so s3fs/botocore speak to it over HTTP exactly as to a
real bucket. Needs the ``s3`` extra (s3fs, moto[server])."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
             "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_bucket(name: str) -> Iterator[str]:
    """``s3://NAME`` on a fresh local server; the environment is restored and the server stopped after.

    fsspec caches filesystems by their options, and the endpoint comes from the environment, so the
    cache is cleared on both sides: a filesystem made for another server's port is never reused."""
    import s3fs
    from moto.server import ThreadedMotoServer

    from sltdata import fs

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in [*FAKE_KEYS, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_KEYS, AWS_ENDPOINT_URL=f"http://{host}:{port}")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        s3, _ = fs.url_to_fs(f"s3://{name}")
        s3.mkdir(name)
        yield f"s3://{name}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
