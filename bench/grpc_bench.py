"""crossrank over gRPC vs sentence-transformers in-process, same model, pairs and threads.

Usage: grpc_bench.py ADDR MODEL_NAME MODEL_DIR [--threads 2] [--clients 16] [--seconds 30]
  [--pairs-per-request 8] [--rerank-docs 100] [--reps 5]
Measures (1) Rerank of N documents, one client, median latency vs CrossEncoder.rank, and
(2) Score throughput with C concurrent clients vs CrossEncoder.predict(batch_size=32).
The baseline runs while the server is idle; the client runs on the same machine as the server.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests/python"))

import corpus  # noqa: E402
import grpc  # noqa: E402
import torch  # noqa: E402
from grpc_parity import stubs  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("model")
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--pairs-per-request", type=int, default=8)
    ap.add_argument("--rerank-docs", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pb, rpc = stubs(Path(tempfile.mkdtemp()))
    pairs = corpus.pairs(2000, 5)
    query, docs = pairs[0][0], [p for _, p in pairs[: a.rerank_docs]]

    ce = CrossEncoder(a.model_dir, device="cpu")
    ce.rank(query, docs[:8])
    st_rank = statistics.median(timed(lambda: ce.rank(query, docs)) for _ in range(a.reps))
    n_st = 320
    st_rate = n_st / timed(lambda: ce.predict(pairs[:n_st], batch_size=32))

    channel = grpc.insecure_channel(a.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = rpc.CrossEncoderStub(channel)
    request = pb.RerankRequest(model=a.model, query=query, documents=[pb.Document(id=str(i), text=d) for i, d in enumerate(docs)])
    stub.Rerank(request, timeout=300)
    cr_rank = statistics.median(timed(lambda: stub.Rerank(request, timeout=300)) for _ in range(a.reps))
    cr_rate, errors = throughput(pb, rpc, a, pairs)

    print(f"machine: {cpu()}, torch threads {a.threads}")
    print(f"Rerank {a.rerank_docs} docs, 1 client, median of {a.reps}: crossrank {cr_rank * 1000:.0f} ms, "
          f"CrossEncoder.rank {st_rank * 1000:.0f} ms, ratio {cr_rank / st_rank:.2f}x latency")
    print(f"Score throughput, {a.clients} clients x {a.pairs_per_request} pairs, {a.seconds:.0f} s: crossrank "
          f"{cr_rate:.1f} pairs/s ({errors} errors), CrossEncoder.predict(batch 32) {st_rate:.1f} pairs/s, "
          f"ratio {cr_rate / st_rate:.2f}x")


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def throughput(pb, rpc, a, pairs):
    done, errors, lock = [0], [0], threading.Lock()
    stop = time.perf_counter() + a.seconds

    def client(k: int) -> None:
        stub = rpc.CrossEncoderStub(grpc.insecure_channel(a.addr))
        i = k * 97
        while time.perf_counter() < stop:
            chunk = [pairs[(i + j) % len(pairs)] for j in range(a.pairs_per_request)]
            i += a.pairs_per_request
            try:
                stub.Score(pb.ScoreRequest(model=a.model, pairs=[pb.Pair(text_a=x, text_b=y) for x, y in chunk]), timeout=300)
                with lock:
                    done[0] += len(chunk)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - start), errors[0]


def cpu() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
