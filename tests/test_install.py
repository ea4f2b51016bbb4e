"""Installing as an operator does (issue 19): a wheel built from the sources,
installed in a fresh virtual environment outside the checkout, runs the daemon
against the media simulator; the README's install step works with Debian's own
/usr/bin/python3 and nothing else on PATH. Both compile the extensions once."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .harness import REPO, Daemon, Sim

DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def checkout_copy(dest: Path) -> Path:
    """The files a fresh clone has (tracked, or new and not ignored), without build output."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def venv_imports(venv: Path) -> str:
    """Where the environment's python imports smartstream (and every compiled part) from."""
    return run(venv / "bin" / "python", "-c",
               "import smartstream, smartstream._ring, smartstream._h2, smartstream._uplink, "
               "smartstream._router, smartstream._resample, smartstream.transport.fast, "
               "smartstream.v1.smartstream_pb2; print(smartstream.__file__)", cwd=venv).stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = checkout_copy(tmp / "src")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src)
    [wheel] = (tmp / "dist").glob("smartstream-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(src).as_posix() for ext in ("py", "pyx", "pxd")
               for p in (src / "smartstream").rglob(f"*.{ext}")}
    assert sources - packaged == set(), "sources missing from the wheel"
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return venv


def test_wheel_runs_the_daemon_outside_the_checkout(wheel_venv):
    assert venv_imports(wheel_venv).startswith(str(wheel_venv / "lib"))
    r = run(wheel_venv / "bin" / "smartstream", "--help", cwd=wheel_venv)
    assert "run" in r.stdout and "demo" in r.stdout
    assert "exit status" in run(wheel_venv / "bin" / "smartstreamctl", "--help").stdout


async def test_wheel_daemon_streams_a_call(wheel_venv, mediasim, pool, tmp_path, server):
    daemon = Daemon(pool, tmp_path, exe=(str(wheel_venv / "bin" / "smartstream"),)).start()
    try:
        sim = await Sim(pool, "--calls", "1", "--seconds", "1",
                        "--target", f"127.0.0.1:{server.port}").start()
        summary = await sim.wait()
        [[rec]] = server.streams.values()
        await asyncio.wait_for(rec.done.wait(), 10)
        assert len(rec.frames(pb.TRACK_INBOUND)) == summary["frames_written"] > 0
        assert daemon.proc.poll() is None
    finally:
        daemon.cleanup()


def test_make_install_with_debians_python(tmp_path):
    """The README's install step with /usr/bin/python3 and no pyenv on PATH, in a copy
    of the checkout (its editable install must not touch this tree's compiled parts)."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("not a Debian host: no /usr/bin/python3")
    src = checkout_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    env = {"PATH": DEBIAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    run("make", "-C", src, "install", f"VENV={venv}", env=env)
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    assert venv_imports(venv).startswith(str(src / "smartstream"))
    r = run(venv / "bin" / "smartstream", "--help", env=env)
    assert "run" in r.stdout
    # the runtime install leaves the test world out
    installed = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze", env=env).stdout
    assert "pytest" not in installed.lower()
    assert not (src / "tests" / "node_server" / "node_modules").exists()
