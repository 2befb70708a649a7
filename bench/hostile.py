"""Hostile inputs against a running crossrank server, timed, with the server's peak RSS.

Usage: hostile.py ADDR PID MINILM_NAME TINY_NAME [REPS]
For each input: the gRPC status, the median wall time over REPS calls, and the server's peak RSS
above its RSS before the call (the kernel's peak mark is reset through /proc/PID/clear_refs
before each call; run as the server's user or root).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from crossrank_tools.grpc_stubs import stubs


def kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def measure(pid, reps, call):
    times, peaks, code = [], [], "OK"
    for _ in range(reps):
        before = kib(pid, "VmRSS:")
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        start = time.perf_counter()
        try:
            call()
        except grpc.RpcError as e:
            code = e.code().name
        times.append(time.perf_counter() - start)
        peaks.append((kib(pid, "VmHWM:") - before) / 1024)
    return code, statistics.median(times), max(peaks)


def main(addr, pid, minilm, tiny, reps=3):
    pid, reps = int(pid), int(reps)
    # Older servers need ~23 GiB for the 64 KiB pair: HOSTILE_MAX_KIB=32 keeps them alive.
    import os
    max_kib = int(os.environ.get("HOSTILE_MAX_KIB", "64"))
    pb, rpc = stubs(Path(tempfile.mkdtemp()))
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel(addr, options=opts)
    stub = rpc.CrossEncoderStub(channel)
    pair = lambda a, b: pb.Pair(text_a=a, text_b=b)
    cases = []
    for k in (k for k in (8, 16, 32, 64) if k <= max_kib):
        side = "!" * (k * 1024)
        cases.append((f"Score, one pair of {k} KiB + {k} KiB of '!' ({minilm})",
                      lambda side=side: stub.Score(pb.ScoreRequest(model=minilm, pairs=[pair(side, side)]))))
    side = "!" * (max_kib * 1024)
    cases.append((f"same {max_kib}+{max_kib} KiB pair on {tiny} (tokenization dominates)",
                  lambda: stub.Score(pb.ScoreRequest(model=tiny, pairs=[pair(side, side)]))))
    cases.append((f"same {max_kib}+{max_kib} KiB pair, truncation REJECT",
                  lambda: stub.Score(pb.ScoreRequest(model=minilm, pairs=[pair("a", "b"), pair(side, side)],
                                                     truncation=pb.TRUNCATION_REJECT))))
    two_k = "word " * 410
    cases.append((f"Score, 2048 pairs of 2 KiB + 2 KiB ({tiny})",
                  lambda: stub.Score(pb.ScoreRequest(model=tiny, pairs=[pair(two_k, two_k)] * 2048))))
    query = "query " * 10922
    docs = [pb.Document(id=str(i), text="d") for i in range(2048)]
    cases.append((f"Rerank, 64 KiB query x 2048 one-byte documents ({tiny})",
                  lambda: stub.Rerank(pb.RerankRequest(model=tiny, query=query, documents=docs))))
    flood = b"\x12\x00" * (1 << 24)
    raw = channel.unary_unary("/crossrank.v1.CrossEncoder/Score",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    cases.append(("Score, 2^24 empty pairs in one 32 MiB message", lambda: raw(flood)))
    cases.append(("Score, 10 KB model name",
                  lambda: stub.Score(pb.ScoreRequest(model="N" * 10000, pairs=[pair("a", "b")]))))
    cases.append(("Score, 10 KB request_id",
                  lambda: stub.Score(pb.ScoreRequest(model=minilm, request_id="N" * 10000,
                                                     pairs=[pair("a", "b")]))))
    # HOSTILE_SKIP: a regular expression of inputs to leave out (e.g. ones that kill old builds).
    import re
    skip = os.environ.get("HOSTILE_SKIP")
    if skip:
        cases = [(n, c) for n, c in cases if not re.search(skip, n)]
    stub.Score(pb.ScoreRequest(model=minilm, pairs=[pair("warm", "up")]))
    print(f"| input | status | median time | peak RSS above before |")
    print(f"|---|---|---|---|")
    for name, call in cases:
        code, t, peak = measure(pid, reps, call)
        print(f"| {name} | {code} | {t * 1000:.1f} ms | {peak:+.1f} MiB |", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
