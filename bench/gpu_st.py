"""The sentence-transformers baseline of the GPU check, for one model and dtype: predict's
pairs/s at batch sizes 32 and 128 over the corpus, its scores, and rank() of 100 documents.

Usage: gpu_st.py MODEL_DIR CORPUS_JSONL DTYPE PAIRS OUT_PREFIX
Writes OUT_PREFIX.json and OUT_PREFIX.scores.jsonl ({"index", "score"} per pair, batch 32).
Runs on CUDA when torch sees a GPU, else on the CPU (the script's smoke run).
"""

import json
import sys
import time

import sentence_transformers
import torch
from sentence_transformers import CrossEncoder

model_dir, corpus, dtype, n, prefix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pairs = [(r["text_a"], r["text_b"]) for r in map(json.loads, open(corpus, encoding="utf-8"))][:n]
device = "cuda" if torch.cuda.is_available() else "cpu"
kinds = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
model = CrossEncoder(model_dir, device=device)
model.model.to(kinds[dtype])


def timed(call):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


report = {"st": sentence_transformers.__version__, "torch": torch.__version__, "device": device,
          "dtype": dtype, "pairs": len(pairs), "pairs_per_s": {}}
scores = None
for batch in (32, 128):
    model.predict(pairs[: 2 * batch], batch_size=batch, show_progress_bar=False)  # warm-up
    seconds, s = timed(lambda: model.predict(pairs, batch_size=batch, show_progress_bar=False))
    report["pairs_per_s"][str(batch)] = len(pairs) / seconds
    scores = s if scores is None else scores
query, docs = pairs[0][0], [d for _, d in pairs[:100]]
model.rank(query, docs)
report["rank100_ms"] = sorted(timed(lambda: model.rank(query, docs))[0] * 1000 for _ in range(7))[3]
json.dump(report, open(prefix + ".json", "w"))
with open(prefix + ".scores.jsonl", "w") as f:
    f.writelines(json.dumps({"index": i, "score": float(v)}) + "\n" for i, v in enumerate(scores))
print(json.dumps(report), file=sys.stderr)
