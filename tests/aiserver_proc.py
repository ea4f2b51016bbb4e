"""tests.aiserver.AIServer in a process of its own, so a test can SIGKILL it
mid-call: no GOAWAY, no RST_STREAM, the kernel just closes its sockets. What
it received survives in a journal file (a line per message and per Ack
written), which every process started on the port appends to.

    python -m tests.aiserver_proc JOURNAL PORT [--ack]   (prints the port once serving)
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from smartstream.v1 import smartstream_pb2 as pb

from .aiserver import AIServer, Recorded
from .harness import REPO


def load_journal(path: Path) -> dict[str, list[Recorded]]:
    """The journal as AIServer.streams: by call uuid, the streams in order."""
    recs: dict[str, Recorded] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        entry = json.loads(line)
        rec = recs.setdefault(entry["stream"], Recorded())
        if "msg" in entry:
            rec.messages.append(pb.GatewayMessage.FromString(bytes.fromhex(entry["msg"])))
        else:
            rec.last_ack[entry["track"]] = entry["ack"]
    streams: dict[str, list[Recorded]] = {}
    for rec in recs.values():
        streams.setdefault(rec.uuid, []).append(rec)
    return streams


class ServerProcess:
    """The interface of AIServer a test needs, with stop() a SIGKILL."""

    def __init__(self, journal: Path, ack: bool = False):
        self.journal, self.ack = journal, ack
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.aiserver_proc", str(self.journal), str(port),
            *(["--ack"] if self.ack else []), cwd=REPO, stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"AI server process exited {await self.proc.wait()}")
        self.port = int(line)
        return self.port

    async def stop(self, grace=None) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    @property
    def streams(self) -> dict[str, list[Recorded]]:
        return load_journal(self.journal)


async def _serve(journal: str, port: int, ack: bool) -> None:
    with open(journal, "a") as f:
        server = AIServer(ack=ack, journal=f)
        if not await server.start(port):
            raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
        print(server.port, flush=True)
        await server.server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), "--ack" in sys.argv[3:]))
