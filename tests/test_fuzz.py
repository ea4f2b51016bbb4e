"""Every fuzzer in tests/fuzz/ for a fixed budget: it must execute its whole
budget of inputs and find nothing. Each runs as its own process (libFuzzer
owns the process) on a copy of its corpus, so a run never writes into the
repository; a crash's input is kept in the test's tmp_path and its path is
in the failure message. Longer runs by hand: tests/fuzz/README.md."""
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
# Inputs per fuzzer, the corpus included: 5-8 s each, under 50 s for all six on
# the 2-core machine (exec/s: h2_inbound ~9000, settings ~6000, server_message
# and payload_json ~4000, cli_args ~1200, pool_file ~1000).
BUDGET = {
    "h2_inbound": 50000,
    "server_message": 15000,
    "payload_json": 15000,
    "pool_file": 5000,
    "settings": 30000,
    "cli_args": 6000,
}


def test_every_fuzzer_is_budgeted():
    assert sorted(p.stem[len("fuzz_"):] for p in FUZZ.glob("fuzz_*.py")) == sorted(BUDGET)


@pytest.mark.parametrize("name", sorted(BUDGET))
def test_fuzzer_finds_nothing(name, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / name, corpus)
    runs = BUDGET[name]
    cmd = [sys.executable, str(FUZZ / f"fuzz_{name}.py"), str(corpus), f"-runs={runs}",
           "-seed=1", "-timeout=10", "-rss_limit_mb=1024", "-max_len=16384",
           f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for left in glob.glob(f"/dev/shm/ssfuzz-{proc.pid}-*"):   # a crash skips the cleanup
            os.unlink(left)
    log = "\n".join(line for line in out.splitlines()
                    if not line.startswith("INFO: Instrumenting"))[-6000:]
    crashes = sorted(str(p) for p in tmp_path.glob("crash-*")) + sorted(
        str(p) for p in tmp_path.glob("timeout-*")) + sorted(str(p) for p in tmp_path.glob("oom-*"))
    assert proc.returncode == 0 and not crashes, \
        f"fuzz_{name} exited {proc.returncode}; inputs: {crashes}\n{log}"
    done = re.search(r"^Done (\d+) runs in \d+ second", out, re.M)
    assert done, f"fuzz_{name} did not report its runs:\n{log}"
    assert int(done.group(1)) >= runs, log
    executed = re.search(r"^stat::number_of_executed_units: (\d+)", out, re.M)
    assert executed and int(executed.group(1)) >= runs, log
