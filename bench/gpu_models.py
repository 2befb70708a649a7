"""Seeded random-weight BERT cross-encoders for the GPU check: "mini" (MiniLM-L6 shape) and
"large" (BERT-large shape), with the MiniLM tokenizer.

Usage: gpu_models.py OUT_DIR [TOKENIZER_DIR=models/minilm-ce] [NAMES=mini,large]
The head's weights are drawn wider than transformers' default so that scores spread over
(0, 1): deviations are then measured where the sigmoid is not flat.
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

SHAPES = {
    "mini": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    # For a run of the script on the CPU (bench/gpu.sh --smoke).
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]

out = Path(sys.argv[1])
source = Path(sys.argv[2] if len(sys.argv) > 2 else "models/minilm-ce")
names = (sys.argv[3] if len(sys.argv) > 3 else "mini,large").split(",")
for name in names:
    torch.manual_seed(20261128)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=1, **SHAPES[name])
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
    target = out / name
    model.save_pretrained(target)
    for f in TOKENIZER_FILES:
        if (source / f).exists():
            shutil.copy(source / f, target / f)
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters", file=sys.stderr)
