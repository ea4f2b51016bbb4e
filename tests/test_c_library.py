"""The plain-C library's own tests (csrc/tests), built with -Wall -Wextra
-Werror and run under AddressSanitizer + UBSan by `make -C csrc check`.
Run from here so that the README's one test command covers the C side too."""
import re
import subprocess

from tests.conftest import CSRC


def test_c_library_under_sanitizers():
    r = subprocess.run(["make", "-C", CSRC, "check"], capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    summary = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert summary, out
    passed, failed = map(int, summary.groups())
    assert failed == 0 and passed > 0, out
    assert "runtime error" not in out and "AddressSanitizer" not in out, out
