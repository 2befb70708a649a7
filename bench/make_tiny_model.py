"""A tiny seeded BERT cross-encoder (hidden 32, 2 layers) with the MiniLM tokenizer, for measuring
the server's own overhead (gRPC, tokenization, batching) where the model costs almost nothing.

Usage: make_tiny_model.py OUT_DIR [TOKENIZER_DIR=models/minilm-ce] [LAYERS=2]
With LAYERS=0 the model is embeddings and the classification head alone: a "null" model that
costs next to nothing, so a benchmark of it measures the server's per-pair cost.
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

out = Path(sys.argv[1])
source = Path(sys.argv[2] if len(sys.argv) > 2 else "models/minilm-ce")
torch.manual_seed(0)
config = BertConfig(
    vocab_size=30522, hidden_size=32, num_hidden_layers=int(sys.argv[3]) if len(sys.argv) > 3 else 2, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=512, num_labels=1,
)
BertForSequenceClassification(config).eval().save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
    if (source / name).exists():
        shutil.copy(source / name, out / name)
