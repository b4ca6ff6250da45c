"""
twistgate.files: what a configuration's files hold is read once, off the
reactor thread on reload, and a generation uses it without reading again.
"""

from __future__ import annotations

import textwrap

import bcrypt
import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from twistgate.config import ConfigError, load_file
from twistgate.generation import Generation
from twistgate.ops.reload import Reloader
from twistgate.resource import GatewayResource
from twistgate.testing import result_of
from twistgate.validation import load_prepared

CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
auth:
  staff: {type: basic, htpasswd: HTPASSWD}
routes:
  - {name: api, path: "/api/*", upstream: app, auth: [staff], headers: {request: {set: {X-Gen: "GEN"}}}}
"""


def write_config(tmp_path, generation="one"):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_bytes(b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)) + b"\n")
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(CONFIG).replace("HTPASSWD", str(htpasswd)).replace("GEN", generation))
    return path, htpasswd


def test_a_generation_uses_the_material_read_beforehand(tmp_path):
    """Once read, the htpasswd file is not read again: the generation builds from the material."""
    path, htpasswd = write_config(tmp_path)
    config, files = load_prepared(str(path))
    assert set(files.htpasswd) == {"staff"} and b"alice" not in files.htpasswd["staff"][1]
    htpasswd.unlink()
    generation = Generation(config, Clock(), files=files)
    assert generation.services.auth.authenticators["staff"].users.keys() == {"alice"}
    with pytest.raises(ConfigError) as error:
        Generation(load_file(str(path)), Clock())  # without material, it reads (and the file is gone)
    assert "auth.staff.htpasswd" in str(error.value)


def test_reload_reads_the_files_through_run_blocking_then_swaps(tmp_path):
    """The reload's loading (YAML, files, bcrypt) goes through `run_blocking`: a thread pool in the service."""
    path, _ = write_config(tmp_path)
    clock = Clock()
    config, files = load_prepared(str(path))
    resource = GatewayResource(Generation(config, clock, files=files))
    ran = []

    def run_blocking(f, *args):
        ran.append(f)
        return maybeDeferred(f, *args)

    reloader = Reloader(resource, resource.generation.ops, clock, run_blocking=run_blocking)
    write_config(tmp_path, generation="two")
    outcome = result_of(reloader.reload())
    assert outcome["ok"] and ran == [load_prepared]
    assert resource.generation.number == 2 and resource.generation.files is not files
