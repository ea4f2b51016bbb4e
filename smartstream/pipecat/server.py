"""An AIStream server that runs one Pipecat pipeline per call.

    async def bot(call: CallStream) -> PipelineWorker:
        transport = SmartStreamTransport(call)
        return PipelineWorker(Pipeline([transport.input(), ..., transport.output()]))

    serve_pipecat(bot, "127.0.0.1:50051")   # or main(bot): --listen from argv
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from smartstream import botkit
from smartstream.botkit import CallStream
from smartstream.v1 import smartstream_pb2 as pb

Bot = Callable[[CallStream], Awaitable[PipelineWorker]]


def pipecat_handler(bot: Bot) -> botkit.Handler:
    """A botkit handler running `bot`'s pipeline for the life of the call."""
    async def handle(call: CallStream) -> None:
        worker = await bot(call)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        run = asyncio.create_task(runner.run())
        ended = asyncio.create_task(call.ended.wait())
        try:
            await asyncio.wait({run, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not run.done():   # the call ended under the pipeline
                await worker.cancel(reason="call ended")
                await run
        if not call.finished:    # cancelled, or ended without passing the output transport
            call.send(done=pb.Done(reason="pipeline finished"))
    return handle


async def serve_pipecat(bot: Bot, listen: str) -> None:
    await botkit.serve(pipecat_handler(bot), listen)


def main(bot: Bot, description: str = "SmartStream Pipecat bot") -> None:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--listen", default=os.environ.get("SMARTSTREAM_BOT_LISTEN", "127.0.0.1:50051"),
                   help="host:port (default: $SMARTSTREAM_BOT_LISTEN or 127.0.0.1:50051)")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args()
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_pipecat(bot, a.listen))
