"""Shared test fixtures: unique shared-memory paths, the layout constants as
csrc/ss_layout.h defines them, and the C media simulator."""
import glob
import os
import re
import subprocess
import uuid

import pytest

from .aiserver import AIServer
from .harness import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
MEDIASIM = os.path.join(CSRC, "build", "mediasim")


@pytest.fixture
def shm_path():
    """A pool path under /dev/shm no one else uses. Everything whose name
    starts with it is removed afterwards, so a test may derive more paths
    (shm_path + "-b")."""
    base = f"/dev/shm/sstest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield base
    for p in glob.glob(glob.escape(base) + "*"):
        os.unlink(p)


def parse_layout(path=os.path.join(CSRC, "ss_layout.h")):
    """Integer #defines of the layout header (the single source of truth)."""
    consts = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*#define\s+(SS_\w+)\s+(.+?)\s*(/\*.*)?$", line)
            if not m:
                continue
            expr = re.sub(r"(?<=[0-9a-fA-F])(?:[uU][lL]{0,2}|[lL]{1,2}[uU]?)\b", "", m.group(2))
            if re.fullmatch(r"[0-9a-fA-Fx()+\-*/<>\s]+", expr):
                consts[m.group(1)] = eval(expr, {"__builtins__": {}})  # digits and operators only
    return consts


@pytest.fixture(scope="session")
def layout():
    return parse_layout()


@pytest.fixture
def pool(shm_path):
    """The pool path a daemon under test creates (removed with shm_path)."""
    return shm_path + ".pool"


@pytest.fixture(scope="session")
def mediasim():
    """csrc/build/mediasim, built once per session with the project Makefile."""
    r = subprocess.run(["make", "-C", CSRC], capture_output=True, text=True)
    if r.returncode != 0 or not os.access(MEDIASIM, os.X_OK):
        pytest.fail(f"make -C csrc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return MEDIASIM


@pytest.fixture
def daemon(pool, tmp_path):
    """daemon(*args, slots=16) starts `smartstream run` on the test's pool;
    every daemon started is killed afterwards."""
    started = []

    def start(*args, slots=16):
        d = Daemon(pool, tmp_path, *args, slots=slots).start()
        started.append(d)
        return d
    yield start
    for d in started:
        d.cleanup()


@pytest.fixture
async def server():
    """A real grpc.aio AI server on loopback (tests/aiserver.py)."""
    s = AIServer()
    await s.start()
    yield s
    await s.stop(0)
