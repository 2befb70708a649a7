"""A real client in another language: Python grpcio against a running crossrank server.

Usage: grpc_parity.py ADDR MODEL_NAME MODEL_DIR
Generates stubs from proto/ into a temporary directory (crossrank_tools.grpc_stubs), then checks that Score and Rerank equal
sentence-transformers' CrossEncoder.predict / .rank on the same model within 1e-4.
"""

import sys
import tempfile
from pathlib import Path

from crossrank_tools import corpus
from crossrank_tools.grpc_stubs import stubs


def main(addr: str, name: str, model_dir: str) -> None:
    import grpc
    from sentence_transformers import CrossEncoder

    pb, rpc = stubs(Path(tempfile.mkdtemp()))
    pairs = corpus.pairs(40, 11)
    ce = CrossEncoder(model_dir, device="cpu")
    want = ce.predict(pairs, batch_size=32)
    with grpc.insecure_channel(addr) as channel:
        stub = rpc.CrossEncoderStub(channel)
        resp = stub.Score(pb.ScoreRequest(model=name, pairs=[pb.Pair(text_a=a, text_b=b) for a, b in pairs],
                                          request_id="py-1"), timeout=120)
        assert resp.request_id == "py-1" and resp.usage.pairs == len(pairs)
        got = [r.scores[0] for r in resp.results]
        dev = max(abs(float(g) - float(w)) for g, w in zip(got, want))
        assert dev <= 1e-4, f"Score differs from CrossEncoder.predict by {dev}"

        query, docs = pairs[0][0], [p for _, p in pairs]
        ranked = ce.rank(query, docs)
        resp = stub.Rerank(pb.RerankRequest(model=name, query=query, documents=[pb.Document(id=str(i), text=d) for i, d in enumerate(docs)],
                                            return_documents=True), timeout=120)
        assert [r.index for r in resp.results] == [int(r["corpus_id"]) for r in ranked], "Rerank order differs from CrossEncoder.rank"
        rdev = max(abs(r.score - float(w["score"])) for r, w in zip(resp.results, ranked))
        assert rdev <= 1e-4, f"Rerank scores differ by {rdev}"
        assert all(r.text == docs[r.index] and r.id == str(r.index) for r in resp.results)
        try:
            stub.Score(pb.ScoreRequest(model="missing", pairs=[pb.Pair(text_a="a", text_b="b")]))
            raise AssertionError("an unknown model was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
    print(f"python grpc client: Score max |delta| {dev:.1e}, Rerank max |delta| {rdev:.1e} vs sentence-transformers")


if __name__ == "__main__":
    main(*sys.argv[1:4])
