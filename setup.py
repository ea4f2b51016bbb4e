"""Builds smartstream: the Cython ring reader over the plain-C library in csrc/,
and the Python gRPC code generated from proto/ (never edited by hand)."""
import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "proto/smartstream/v1/smartstream.proto"
C_LIB = ["csrc/ss_ring.c", "csrc/ss_pool.c", "csrc/ss_daemon.c", "csrc/ss_stream.c"]
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-function",
          "-Wno-unreachable-code", "-Wno-unused-parameter"]


def generate_proto():
    """proto/ -> smartstream/v1/*_pb2*.py, next to the package sources."""
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{HERE}/proto", f"-I{include}", f"--python_out={HERE}",
                      f"--grpc_python_out={HERE}", f"{HERE}/{PROTO}"])
    if rc != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    open(os.path.join(HERE, "smartstream", "v1", "__init__.py"), "a").close()


class BuildPy(build_py):
    def run(self):
        generate_proto()
        super().run()


generate_proto()  # editable installs skip build_py

from Cython.Build import cythonize  # noqa: E402  (a build requirement)

exts = [
    Extension("smartstream._ring", ["smartstream/_ring.pyx", *C_LIB],
              include_dirs=["csrc"], extra_compile_args=CFLAGS),
    Extension("smartstream._resample", ["smartstream/_resample.pyx"],
              libraries=["speexdsp"], extra_compile_args=CFLAGS),
    Extension("smartstream._uplink", ["smartstream/_uplink.pyx", "csrc/ss_ring.c"],
              include_dirs=["csrc"], libraries=["speexdsp"], extra_compile_args=CFLAGS),
    Extension("smartstream._tts_wire", ["smartstream/_tts_wire.pyx"], extra_compile_args=CFLAGS),
    Extension("smartstream._h2", ["smartstream/_h2.pyx"], libraries=["nghttp2"],
              extra_compile_args=CFLAGS),
    Extension("smartstream._router", ["smartstream/_router.pyx"], include_dirs=["csrc"],
              extra_compile_args=CFLAGS),
]

setup(
    ext_modules=cythonize(exts, language_level=3),
    cmdclass={"build_py": BuildPy},
)
