"""SmartStream for Pipecat: `pip install smartstream[pipecat]`, see docs/bots.md."""
from smartstream.botkit import CallStream

from .frames import PlaybackClearedFrame, PlaybackDrainedFrame, PlaybackMarkFrame, PlaybackMarkReachedFrame
from .server import main, pipecat_handler, serve_pipecat
from .transport import SmartStreamParams, SmartStreamTransport

__all__ = ["CallStream", "PlaybackClearedFrame", "PlaybackDrainedFrame", "PlaybackMarkFrame",
           "PlaybackMarkReachedFrame", "SmartStreamParams", "SmartStreamTransport", "main",
           "pipecat_handler", "serve_pipecat"]
