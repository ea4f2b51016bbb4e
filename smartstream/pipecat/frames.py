"""Pipecat frames for what only a phone gateway knows: what the caller heard.

The transport pushes the Playback*Frame system frames downstream as the
gateway reports playout, so any processor (e.g. the one keeping the LLM
context) can truncate what the bot believes it said to what was heard.
PlaybackMarkFrame goes the other way: queued in order with the bot's audio,
it is reached (PlaybackMarkReachedFrame) once the caller heard all before it.
"""
from dataclasses import dataclass, field

from pipecat.frames.frames import DataFrame, SystemFrame


@dataclass
class PlaybackMarkFrame(DataFrame):
    """Ask to be told when playout reaches this point of the bot's audio."""
    mark: str


@dataclass
class PlaybackMarkReachedFrame(SystemFrame):
    """The caller heard everything queued before `mark` (cleared: it was dropped unheard)."""
    mark: str
    cleared: bool = False


@dataclass
class PlaybackClearedFrame(SystemFrame):
    """Answer to an interruption: the gateway dropped the queued audio.

    heard_ms is what the caller heard of the interrupted utterance."""
    dropped_ms: int
    heard_ms: int
    discarded_marks: list[str] = field(default_factory=list)


@dataclass
class PlaybackDrainedFrame(SystemFrame):
    """Playout ran dry: the caller heard every sample the bot sent."""
    played_ms: int
    last_mark: str = ""
