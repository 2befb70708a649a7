"""One Rerank from Python grpcio, printed as JSON: [{"index": i, "score": s}, ...] best first.

Usage: rerank_json.py ADDR MODEL QUERY DOCUMENTS_FILE   (one document per line)
Used by the image test (tests/serve/image.rs) against a server in a container.
"""

import json
import sys
import tempfile
from pathlib import Path

from crossrank_tools.grpc_stubs import stubs


def main(addr: str, model: str, query: str, documents: str) -> None:
    import grpc

    pb, rpc = stubs(Path(tempfile.mkdtemp()))
    docs = Path(documents).read_text(encoding="utf-8").splitlines()
    with grpc.insecure_channel(addr) as channel:
        resp = rpc.CrossEncoderStub(channel).Rerank(
            pb.RerankRequest(model=model, query=query, documents=[pb.Document(text=d) for d in docs]),
            timeout=120)
    print(json.dumps([{"index": r.index, "score": r.score} for r in resp.results]))


if __name__ == "__main__":
    main(*sys.argv[1:5])
