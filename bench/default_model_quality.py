"""How well the default model ranks: held-out retrieval and the demo queries, for the teacher bi-encoder,
the distilled cross-encoder (models/minilm-ce) and the untrained head it replaced (built into a temp dir).

Usage: python bench/default_model_quality.py [MODEL_DIR]      (about 5 minutes on 2 cores)

Held-out retrieval: every docstring of crossrank_tools.default_model.HELD_OUT (modules never trained on) with >= 2
usable sentences gives one query whose single relevant passage is its own body (sentences 2-5), ranked
against 20 candidates: its body, the 9 other held-out bodies with the highest TF-IDF cosine to the query
(lexical hard negatives, chosen without any model under test) and 10 random other held-out bodies.
Two query styles: "first sentence" (the docstring's first sentence) and "keywords" (2-6 consecutive
lower-cased words of a body sentence, as in crossrank_tools/corpus.py).
MRR@10 = mean 1/rank (0 beyond 10); NDCG@10 with one relevant passage = mean 1/log2(rank + 1) (0 beyond 10).
Demo: each query of DEMO against the lines of examples/documents.txt, the ones scripts/demo.sh ranks.
"""

import math
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from crossrank_tools import default_model as M
from sentence_transformers import CrossEncoder, SentenceTransformer

ROOT = Path(__file__).resolve().parents[1]

SEED = 7
N_HARD, N_RANDOM = 9, 10
DEMO_DOCS = (ROOT / "examples/documents.txt").read_text().splitlines()
DEMO = {  # query: the start of the document a reader expects first
    "how do I read a file in rust": "Use std::fs::read_to_string",
    "what is the capital of france": "Paris",
    "parse command line arguments": "The argparse module",
    "serialize an object to json": "json.dumps",
    "which fruit has potassium": "Bananas",
    "rust package manager": "Cargo",
    "how do plants make sugar from sunlight": "Photosynthesis",
}


def tfidf(texts: list[str]) -> list[dict[str, float]]:
    toks = [Counter(w.lower() for w in M.words(t)) for t in texts]
    df = Counter(w for t in toks for w in t)
    vecs = []
    for t in toks:
        v = {w: c * math.log((1 + len(texts)) / (1 + df[w])) for w, c in t.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vecs.append({w: x / norm for w, x in v.items()})
    return vecs


def cos(a: dict, b: dict) -> float:
    return sum(x * b.get(w, 0.0) for w, x in a.items())


def heldout_tasks() -> dict[str, list[tuple[str, list[str]]]]:
    """{task: [(query, candidates with the relevant one first)]}"""
    rng = random.Random(SEED)
    docs = [s for module, s in M.documents() if module in M.HELD_OUT]
    bodies = [M.body(s) for s in docs]
    queries = {"first sentence": [s[0] for s in docs], "keywords": []}
    for s in docs:
        w = M.words(rng.choice(s[1:5]))
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
            items.append((q, [bodies[c] for c in [d] + hard + rng.sample(rest, N_RANDOM)]))
        tasks[name] = items
    return tasks


def metrics(per_query: list[list[float]]) -> tuple[float, float, float]:
    """MRR@10, NDCG@10 and top-1 when the relevant candidate is first in each list of scores."""
    mrr = ndcg = top1 = 0.0
    for s in per_query:
        rank = 1 + sum(1 for x in s[1:] if x > s[0])  # ties count in favour of the relevant passage
        if rank <= 10:
            mrr += 1 / rank
            ndcg += 1 / math.log2(rank + 1)
        top1 += rank == 1
    return mrr / len(per_query), ndcg / len(per_query), top1 / len(per_query)


def scorers(model_dir: str, untrained_dir: str) -> dict:
    """name -> score(pairs) -> raw scores: cosine for the teacher, logits for the cross-encoders."""
    teacher = SentenceTransformer(str(M.get_model_path()), device="cpu")

    def teacher_score(pairs):
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        emb = teacher.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        row = {t: i for i, t in enumerate(texts)}
        return [float(emb[row[a]] @ emb[row[b]]) for a, b in pairs]

    def cross_encoder(path):
        ce = CrossEncoder(path, device="cpu")
        return lambda pairs: ce.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity()).tolist()

    return {"teacher: bi-encoder cosine": teacher_score,
            "distilled cross-encoder": cross_encoder(model_dir),
            "untrained head (the previous default)": cross_encoder(untrained_dir)}


def heldout_table(models: dict, model_dir: str) -> None:
    tasks = heldout_tasks()
    n = 1 + N_HARD + N_RANDOM
    print(f"held-out: {len(tasks['keywords'])} queries x {n} candidates each; distilled = {model_dir}\n")
    print("| model | task | MRR@10 | NDCG@10 | top-1 | seconds |")
    print("|---|---|---|---|---|---|")
    for name, score in models.items():
        for task, items in tasks.items():
            t = time.perf_counter()
            flat = score([(q, c) for q, cands in items for c in cands])
            mrr, ndcg, top1 = metrics([flat[i : i + n] for i in range(0, len(flat), n)])
            print(f"| {name} | {task} | {mrr:.3f} | {ndcg:.3f} | {top1:.3f} | {time.perf_counter() - t:.0f} |",
                  flush=True)


def demo_rankings(models: dict) -> None:
    print("\ndemo: each query against examples/documents.txt; raw scores, best first, margin = first - second")
    for name, score in models.items():
        correct = 0
        print(f"\n{name}")
        for q, want in DEMO.items():
            s = score([(q, d) for d in DEMO_DOCS])
            order = sorted(range(len(DEMO_DOCS)), key=lambda i: -s[i])
            ok = DEMO_DOCS[order[0]].startswith(want)
            correct += ok
            print(f"  {q!r}: {'OK' if ok else 'WRONG'}, margin {s[order[0]] - s[order[1]]:.2f}")
            for i in order[:3]:
                print(f"    {s[i]:7.3f}  {DEMO_DOCS[i]}")
        print(f"  top-1 correct: {correct}/{len(DEMO)}")


def main(model_dir: str) -> None:
    torch.set_num_threads(M.THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        M.build_untrained(Path(tmp))
        models = scorers(model_dir, tmp)
        heldout_table(models, model_dir)
        demo_rankings(models)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "models/minilm-ce"))
