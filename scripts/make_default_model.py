"""Build the default demo cross-encoder, models/minilm-ce (the recipe: python/crossrank_tools/default_model.py).

Usage: make_default_model.py [--untrained] OUT_DIR   (python/ on PYTHONPATH: source scripts/env.sh)
"""

import sys

from crossrank_tools import default_model

if __name__ == "__main__":
    default_model.main(sys.argv[1:])
