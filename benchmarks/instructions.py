"""Instructions per frame on the daemon's fast path, counted by callgrind: a
figure a shared, noisy machine cannot blur (CPU time on it moves ±10% from
run to run; this does not move at all).

    python3 benchmarks/instructions.py          # ~1 min; needs valgrind

CALLS 16 kHz calls, one frame each per tick: ModuleStream.write (the
module's C write), Pool.drain, Router.deliver (resume window, encoding into
the stream buffer), H2Connection.flush (nghttp2, the output buffer, one
write into a transport that drops: no kernel). Runs itself under callgrind
twice, with TICKS ticks and with none after the same warm-up, and prints the
difference per frame, for each step (inclusive) and for memcpy. The Python
loop around the steps is not a step, so the steps do not add up to "all".
"""
import os
import re
import struct
import subprocess
import sys
import tempfile

CALLS, WARMUP, TICKS = 100, 200, 100
STEPS = {   # what to look for in callgrind_annotate's inclusive list
    "Pool.drain": r"_ring_4Pool_\d+drain ",
    "Router.deliver": r"_router_6Router_\d+deliver ",
    "  Uplink.push_c (window)": r"Uplink_push_c ",
    "  H2Connection.send_audio (encode)": r"H2Connection_send_audio ",
    "H2Connection.flush": r"H2Connection_\d+flush ",
    "  nghttp2_session_mem_send": r"nghttp2_session_mem_send ",
    "memcpy, everywhere": r"__memcpy\w* ",
}


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


class Drop:
    """Transport and handler: writes vanish, nothing is told."""

    def write(self, data):
        pass

    def get_extra_info(self, name, default=None):
        return default

    def close(self):
        pass

    def on_message(self, *a):
        pass

    on_stream_closed = on_connection_lost = on_message


def ticks(n: int) -> None:
    from smartstream._h2 import H2Connection
    from smartstream._ring import Batch, ModuleStream, Pool
    from smartstream._router import Router
    from smartstream._uplink import Uplink

    path = f"/dev/shm/ssinstr-{os.getpid()}"
    pool = Pool.open(path, CALLS)
    try:
        conn, router, calls = H2Connection("bench:1", "http", Drop()), Router(CALLS), []
        for i in range(CALLS):
            ms = ModuleStream(pool, f"c{i}", "127.0.0.1:1", 16000)
            pool.watch(ms.slot, ms.generation)
            up = Uplink(16000, 16000, [0], 2000)
            up.bind(pool, ms.slot, False)
            router.route(ms.slot, up, conn, conn.open_stream("/p", []))
            calls.append(ms)
        conn.connection_made(Drop())
        # The server's SETTINGS (a 2^31-1 stream window), our SETTINGS acked, the connection window opened.
        conn.data_received(frame(4, 0, 0, struct.pack(">HI", 4, 2**31 - 1)) + frame(4, 1, 0)
                           + frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65535)))
        pcm, batch, sent = os.urandom(640), Batch(), 0
        for t in range(WARMUP + n):   # warm-up: windows full and trimming, buffers at size
            for ms in calls:
                ms.write(0, pcm, t)
            pool.drain(batch)
            sent += router.deliver(batch, t)[0]
            conn.flush()
        assert sent == CALLS * (WARMUP + n), f"{sent} frames sent"
    finally:
        os.unlink(path)


def counts(n: int, out: str) -> dict:
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                    __file__, "--ticks", str(n)], check=True, capture_output=True)
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", out], check=True,
                          capture_output=True, text=True).stdout
    found = {"all": int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)[1].replace(",", ""))}
    for name, pat in STEPS.items():
        for line in text.splitlines():
            if re.search(pat, line) and "=>" not in line and re.match(r"\s*[\d,]+ ", line):
                found[name] = int(line.split()[0].replace(",", ""))
                break
    return found


def main() -> None:
    if sys.argv[1:2] == ["--ticks"]:
        ticks(int(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as d:
        base, run = counts(0, f"{d}/0"), counts(TICKS, f"{d}/1")
    frames = CALLS * TICKS
    print(f"instructions per frame ({CALLS} calls, {TICKS} ticks after {WARMUP} of warm-up):")
    for name in ["all", *STEPS]:
        if name in run:
            print(f"  {name:<36} {(run[name] - base.get(name, 0)) / frames:8.0f}")


if __name__ == "__main__":
    main()
