"""A minimal Python client for crossrank: Rerank a few documents.

Usage: python examples/client.py [ADDR] [MODEL]   (defaults: 127.0.0.1:50051, the only model)
Stubs are generated from proto/ on the fly with grpcio-tools (pip install grpcio grpcio-tools).
"""

import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

proto = Path(__file__).resolve().parents[1] / "proto"
out = tempfile.mkdtemp()
protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}", str(proto / "crossrank/v1/crossrank.proto")])
sys.path.insert(0, out)
from crossrank.v1 import crossrank_pb2 as pb, crossrank_pb2_grpc as rpc  # noqa: E402

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
model = sys.argv[2] if len(sys.argv) > 2 else ""
documents = [
    "Paris is the capital of France.",
    "json.dumps serializes a Python object to a JSON string.",
    "Use std::fs::read_to_string to read a whole file into a String.",
    "Bananas are a good source of potassium.",
]
with grpc.insecure_channel(addr) as channel:
    response = rpc.CrossEncoderStub(channel).Rerank(
        pb.RerankRequest(
            model=model,
            query="how do I read a file in rust",
            documents=[pb.Document(id=f"doc-{i}", text=t) for i, t in enumerate(documents)],
            top_n=3,
            return_documents=True,
        ),
        timeout=30,
    )
for rank, r in enumerate(response.results, 1):
    print(f"{rank}\t{r.id}\t{r.score:.6f}\t{r.text}")
print(f"model {response.model}: {response.usage.pairs} pairs, {response.usage.tokens} tokens, "
      f"{response.timing.total_us} us total ({response.timing.inference_us} us inference)")
