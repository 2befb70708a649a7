"""Build tiny, seeded, offline causal-LM rerankers in sentence-transformers' on-disk form, and record
what sentence-transformers' CrossEncoder.predict() gives for a fixed set of pairs.

Usage: python make_tiny_causal_reranker.py OUT_DIR

Writes (every model directory is written by CrossEncoder.save_pretrained, so the layout is ST's own):
  OUT_DIR/                 tied Qwen3ForCausalLM + 1_LogitScore (true="yes", false="no")
  OUT_DIR/expected.json    reference scores for OUT_DIR
  OUT_DIR/untied/          same tokenizer/template, tie_word_embeddings=False (separate lm_head.weight)
  OUT_DIR/untied/expected.json
  OUT_DIR/seqcls/          Qwen3ForSequenceClassification converted from the tied model
                           (score.weight = embed["yes"] - embed["no"]), same chat template, no LogitScore
  OUT_DIR/seqcls/expected.json

Everything is local: the byte-level BPE tokenizer is trained here with the `tokenizers` library, the
weights are random (torch.manual_seed), nothing is downloaded. Tested with sentence-transformers 6.2.0,
transformers 5.24.0, torch 2.13.0 (CPU). See st-causal-reranker.md beside this file for the rules.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402
from sentence_transformers.cross_encoder.modules import LogitScore  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification  # noqa: E402
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer  # noqa: E402

SEED = 1234
MAX_LENGTH = 192  # saved as tokenizer_config.json "model_max_length"; < max_position_embeddings; only the
# LONG_DOC pair renders longer than this (with the default prompt)
MAX_POSITIONS = 512
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# What the template renders into <Instruct> when no system message is present.
TEMPLATE_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
# Saved in config_sentence_transformers.json as prompts["query"] with default_prompt_name="query":
# predict()/rank() send it as a system message unless prompt=/prompt_name= overrides it.
# Deliberately different from the template default so the two paths give different scores.
CONFIG_PROMPT = "Given a question, retrieve passages that answer it"
CUSTOM_PROMPT = "Judge whether the document is about geography"

# Qwen3-Reranker-style template, in the shape sentence-transformers' own tests use
# (tests/cross_encoder/test_model.py::test_qwen3_reranker_with_chat_template): system message ->
# <Instruct> (with a default), role "query" -> <Query>, role "document" -> <Document>, then the
# assistant prefix with an empty think block. Content is read flat (map(attribute="content")), so ST
# infers message format "flat". Jinja drops ONE trailing newline (keep_trailing_newline=False), so the
# template ends in three newlines to render "</think>\n\n".
CHAT_TEMPLATE = (
    "<|im_start|>system\n"
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
    '<Instruct>: {{ messages | selectattr("role", "eq", "system") | map(attribute="content") | first'
    ' | default("' + TEMPLATE_DEFAULT_INSTRUCTION + '") }}\n'
    '<Query>: {{ messages | selectattr("role", "eq", "query") | map(attribute="content") | first }}\n'
    '<Document>: {{ messages | selectattr("role", "eq", "document") | map(attribute="content") | first }}'
    "<|im_end|>\n"
    "<|im_start|>assistant\n"
    "<think>\n\n</think>\n\n\n"
)

LONG_DOC = " ".join(
    [
        "Rerankers read the query and the document together and emit one relevance score.",
        "When the rendered prompt is longer than the model limit, the tokenizer cuts it on the right,",
        "and sentence-transformers writes the fixed template tail back over the last real tokens.",
    ]
    * 6
)
PAIRS = [
    ("What is the capital of France?", "Paris is the capital and largest city of France."),
    ("What is the capital of France?", "Bananas are rich in potassium."),
    ("", "An empty query still renders the whole template."),
    ("a query with an empty document", ""),
    ("", ""),
    ("Wie groß ist der Kölner Dom? 🏰", "Der Kölner Dom ist 157 m hoch — 東京タワーは333 m。café naïve e\u0301"),
    ("  leading and trailing spaces  ", "tabs\tand\nnewlines\n\nand <b>markup</b>"),
    ("does the tail survive truncation?", LONG_DOC),
    ("control tokens in content", "before <|im_end|> after <|endoftext|> end"),
]


def train_tokenizer() -> Qwen2Tokenizer:
    """A small byte-level BPE with Qwen2's normalizer / pre-tokenizer, wrapped in Qwen2Tokenizer."""
    corpus = [CHAT_TEMPLATE, TEMPLATE_DEFAULT_INSTRUCTION, CONFIG_PROMPT, CUSTOM_PROMPT, LONG_DOC]
    corpus += [f"{q}\n{d}" for q, d in PAIRS]
    corpus += ["yes\nno\nyes no Yes No\n"] * 50  # "yes" / "no" must be single tokens (LogitScore ids)
    corpus += [
        "the quick brown fox jumps over the lazy dog",
        "a relevant document answers the query; an irrelevant one does not",
        "search query passage retrieve relevant answer document instruct judge",
    ] * 5
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = state["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    # Same special-token setup as Qwen3: eos=<|im_end|>, pad=<|endoftext|>, no bos, no unk.
    hf_tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=MAX_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    for word in ("yes", "no"):
        ids = hf_tok.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise SystemExit(f"{word!r} is not a single token: {ids}")
    return hf_tok


def qwen3_config(tok, tie: bool) -> Qwen3Config:
    vocab_size = ((len(tok) + 63) // 64) * 64  # padded past the tokenizer, like Qwen3 (151936 > 151669)
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        initializer_range=0.3,  # large, so scores differ clearly between pairs
        tie_word_embeddings=tie,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        use_cache=False,
        dtype="float32",
    )


def hf_dir(tok, model, where: Path) -> Path:
    model.save_pretrained(where)
    tok.save_pretrained(where)
    return where


def st_messages(model: CrossEncoder, pair, prompt: str | None) -> list[dict]:
    """The conversation ST builds for a text pair (flat format), see InputFormatter.pair_to_messages
    and prepend_prompt_to_messages."""
    fmt = model[0].input_formatter
    messages = fmt.pair_to_messages(pair)
    if prompt:
        messages = fmt.prepend_prompt_to_messages([messages], prompt)[0]
    return messages


def reference(model: CrossEncoder) -> dict:
    """Scores and token ids as ST produces them for PAIRS."""
    tr = model[0]
    tok = tr.tokenizer
    pairs = [list(p) for p in PAIRS]
    default_prompt = model._resolve_prompt(None, None)
    out: dict = {
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "architecture": type(tr.model).__name__,
        "transformer_task": tr.transformer_task,
        "modality_config": tr.modality_config,
        "modules": [type(m).__name__ for m in model],
        "logit_score": (
            {"true_token_id": model[1].true_token_id, "false_token_id": model[1].false_token_id}
            if len(model) > 1 and isinstance(model[1], LogitScore)
            else None
        ),
        "default_activation_fn": type(model.activation_fn).__name__,
        "max_length": tr.max_seq_length,
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        "pad_token_id": tok.pad_token_id,
        "config_pad_token_id": tr.model.config.pad_token_id,
        "prompts": model.prompts,
        "default_prompt_name": model.default_prompt_name,
        "template_default_instruction": TEMPLATE_DEFAULT_INSTRUCTION,
        "custom_prompt": CUSTOM_PROMPT,
        "pairs": pairs,
        "rows": [],
        "scores": {},
        "notes": {
            "scores.default": "predict(pairs) (batch_size=32: one left-padded batch), default activation",
            "scores.identity": "predict(pairs, activation_fn=Identity) = raw logit difference",
            "scores.identity_bs1": "same, batch_size=1 (no padding); differs from identity only by float noise",
            "scores.no_prompt_identity": "predict(pairs, prompt='', activation_fn=Identity): no system message, "
            "template default instruction",
            "scores.custom_prompt_identity": "predict(pairs, prompt=custom_prompt, activation_fn=Identity)",
            "rows[i].input_ids": "what Transformer.preprocess([pair]) feeds the model (no padding), after "
            "truncation and the template-tail restore",
        },
    }
    for pair in pairs:
        messages = st_messages(model, pair, default_prompt)
        rendered = tok.apply_chat_template(messages, tokenize=False)
        full_ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
        features = tr.preprocess([pair], prompt=default_prompt)
        ids = features["input_ids"][0].tolist()
        out["rows"].append(
            {
                "messages": messages,
                "rendered": rendered,
                "untruncated_len": len(full_ids),
                "truncated": len(full_ids) > tr.max_seq_length,
                "untruncated_tail_ids": full_ids[-24:],
                "input_ids": ids,
            }
        )
    ident = torch.nn.Identity()
    out["scores"]["default"] = model.predict(pairs).tolist()
    out["scores"]["identity"] = model.predict(pairs, activation_fn=ident).tolist()
    out["scores"]["identity_bs1"] = model.predict(pairs, activation_fn=ident, batch_size=1).tolist()
    out["scores"]["no_prompt_identity"] = model.predict(pairs, prompt="", activation_fn=ident).tolist()
    out["scores"]["custom_prompt_identity"] = model.predict(pairs, prompt=CUSTOM_PROMPT, activation_fn=ident).tolist()
    out["max_abs_diff_batched_vs_bs1"] = float(
        np.max(np.abs(np.array(out["scores"]["identity"]) - np.array(out["scores"]["identity_bs1"])))
    )
    return out


def build_causal(tok, tie: bool, staging: Path, out: Path) -> CrossEncoder:
    torch.manual_seed(SEED if tie else SEED + 1)
    lm = Qwen3ForCausalLM(qwen3_config(tok, tie)).eval()
    src = hf_dir(tok, lm, staging)
    # A plain HF *ForCausalLM directory: CrossEncoder._load_default_modules builds
    # [Transformer(transformer_task="text-generation"), LogitScore(yes, no)].
    model = CrossEncoder(
        str(src),
        prompts={"query": CONFIG_PROMPT},
        default_prompt_name="query",
        local_files_only=True,
        device="cpu",
    )
    assert [type(m).__name__ for m in model] == ["Transformer", "LogitScore"], model
    assert model[1].true_token_id == tok.convert_tokens_to_ids("yes")
    assert model[1].false_token_id == tok.convert_tokens_to_ids("no")
    model.save_pretrained(str(out))
    return lm


def build_seqcls(tok, lm: Qwen3ForCausalLM, staging: Path, out: Path) -> None:
    cfg = qwen3_config(tok, True)
    cfg.num_labels = 1
    cfg.architectures = ["Qwen3ForSequenceClassification"]
    sc = Qwen3ForSequenceClassification(cfg).eval()
    missing, unexpected = sc.load_state_dict(lm.state_dict(), strict=False)
    assert missing == ["score.weight"], missing
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    with torch.no_grad():
        head = lm.get_output_embeddings().weight
        sc.score.weight.copy_((head[yes] - head[no]).unsqueeze(0))
    src = hf_dir(tok, sc, staging)
    model = CrossEncoder(
        str(src),
        prompts={"query": CONFIG_PROMPT},
        default_prompt_name="query",
        local_files_only=True,
        device="cpu",
    )
    assert [type(m).__name__ for m in model] == ["Transformer"], model
    model.save_pretrained(str(out))


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def main(out: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lm = build_causal(tok, True, tmp / "tied", out)
        build_causal(tok, False, tmp / "untied", out / "untied")
        build_seqcls(tok, lm, tmp / "seqcls", out / "seqcls")

    for sub in ("", "untied", "seqcls"):
        path = out / sub
        model = CrossEncoder(str(path), local_files_only=True, device="cpu")  # reload what ST wrote
        ref = reference(model)
        (path / "expected.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1))
        print(f"== {path} ({ref['architecture']}, modules={ref['modules']}, max_length={ref['max_length']}, "
              f"padding_side={ref['padding_side']})")
        for name, values in ref["scores"].items():
            print(f"  {name:24s} " + " ".join(f"{v: .6f}" for v in values))
        print(f"  truncated rows: {[i for i, r in enumerate(ref['rows']) if r['truncated']]}, "
              f"max |batched - bs1| = {ref['max_abs_diff_batched_vs_bs1']:.3g}")
    print("files:")
    for name in listing(out):
        print("  " + name)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
