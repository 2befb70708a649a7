"""Python gRPC stubs for proto/crossrank/v1/crossrank.proto, generated at run time (never committed)."""

import sys
from pathlib import Path

PROTO = Path(__file__).resolve().parents[2] / "proto"


def stubs(out: Path):
    """Generates the stubs into `out` and returns the modules (crossrank_pb2, crossrank_pb2_grpc)."""
    from grpc_tools import protoc

    rc = protoc.main(["protoc", f"-I{PROTO}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(PROTO / "crossrank/v1/crossrank.proto")])
    assert rc == 0, f"protoc failed with {rc}"
    sys.path.insert(0, str(out))  # the generated *_grpc module imports crossrank.v1 by name
    from crossrank.v1 import crossrank_pb2, crossrank_pb2_grpc

    return crossrank_pb2, crossrank_pb2_grpc
