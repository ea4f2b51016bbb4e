"""The comparison harness (benchmarks/macro.py) runs end to end on a tiny N
and every frame written reaches the sink. No timing is asserted: that is
the benchmark's job, on a quiet machine."""
import json
import subprocess
import sys

from tests.harness import MEDIASIM, REPO


def test_macro_runs_all_three_systems(tmp_path):
    assert MEDIASIM.exists(), "build csrc first (make -C csrc)"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "macro.py"), "--calls", "3",
                    "--seconds", "2", "--out", str(tmp_path)], check=True, timeout=180)

    runs = json.loads((tmp_path / "raw" / "latest.json").read_text())
    assert [r["system"] for r in runs] == ["fast", "grpcio", "ws"]
    for r in runs:
        assert r["calls"] == 3
        assert r["frames_written"] > 0
        assert r["frames_received"] == r["frames_written"], r
        assert r["lost"] == 0

    rows = [line for line in (tmp_path / "latest.md").read_text().splitlines() if line.startswith("|")]
    header, rule, *body = rows
    assert len(body) == 3
    width = header.count("|")
    assert rule.count("|") == width and all(row.count("|") == width for row in body)
    assert [row.split("|")[1].strip() for row in body] == ["fast", "grpcio", "ws"]
