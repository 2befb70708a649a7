"""A seeded random-weight Qwen3ForSequenceClassification of Qwen3-Reranker-0.6B's shape (28 layers,
hidden 1024, 16 query / 8 key-value heads of 128, intermediate 3072), for speed comparisons.
The vocabulary is the MiniLM tokenizer's (30,522 tokens instead of Qwen's 151,669): only the
embedding table's size differs, not the work per token.

Usage: make_llm_model.py OUT_DIR [TOKENIZER_DIR=models/minilm-ce]
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForSequenceClassification

out = Path(sys.argv[1])
source = Path(sys.argv[2] if len(sys.argv) > 2 else "models/minilm-ce")
torch.manual_seed(20261128)
config = Qwen3Config(vocab_size=30522, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                     num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     rope_theta=1_000_000.0, tie_word_embeddings=True, num_labels=1, pad_token_id=0)
Qwen3ForSequenceClassification(config).eval().save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
    if (source / name).exists():
        shutil.copy(source / name, out / name)
