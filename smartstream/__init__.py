"""SmartStream: FreeSWITCH call audio to AI servers over gRPC, through shared memory."""

__version__ = "0.1.0"
