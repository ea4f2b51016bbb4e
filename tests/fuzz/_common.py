"""What every fuzzer here shares: the import path, quiet counted logs, a
contract check that survives `python -O`, unique /dev/shm paths, and main().

A fuzzer is `fuzz_<name>.py` with a TestOneInput(data: bytes) that raises
only when the project broke its contract; atheris reports anything escaping
it as a crash and saves the input as crash-<sha1> (under -artifact_prefix).
"""
import logging
import os
import sys
import types
import uuid

import atheris

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)   # smartstream from this work tree, and tests.* helpers


class ContractViolation(AssertionError):
    """The code under test did something its contract does not allow."""


def check(cond, what) -> None:
    if not cond:
        raise ContractViolation(what() if callable(what) else what)


class LogCounter(logging.Handler):
    """Takes every record in place of stderr (thousands of inputs a second
    would flood it) and counts those at ERROR and above."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.errors = 0

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.errors += 1


LOGS = LogCounter()
_root = logging.getLogger()
_root.handlers[:] = [LOGS]
_root.setLevel(logging.WARNING)


def shm_path(name: str) -> str:
    """A /dev/shm path no one else uses. Callers unlink it as soon as it is
    mapped (the mapping lives on), so even a fuzzer that crashes or is ended
    by libFuzzer, which skips Python's atexit, leaves at most one file."""
    return f"/dev/shm/ssfuzz-{os.getpid()}-{name}-{uuid.uuid4().hex[:8]}"


def _instrument_module(module) -> None:
    """instrument_imports covers what a fuzzer imports; its own functions
    (input decoding, contract checks) are instrumented here so their
    branches count as coverage too."""
    for obj in list(vars(module).values()):
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for member in vars(obj).values():
                if isinstance(member, types.FunctionType):
                    atheris.instrument_func(member)
        elif isinstance(obj, types.FunctionType) and obj.__module__ == module.__name__:
            atheris.instrument_func(obj)


def main(test_one_input) -> None:
    """Run under libFuzzer: flags and corpus directories come from sys.argv.
    A fuzzer's dictionary, <name>.dict beside fuzz_<name>.py, is used unless
    the command line names one."""
    _instrument_module(sys.modules[test_one_input.__module__])
    argv = list(sys.argv)
    script = os.path.abspath(argv[0])
    name = os.path.basename(script)[len("fuzz_"):-len(".py")]
    words = os.path.join(os.path.dirname(script), name + ".dict")
    if os.path.exists(words) and not any(a.startswith("-dict=") for a in argv):
        argv.append(f"-dict={words}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
