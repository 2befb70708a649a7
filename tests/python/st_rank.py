"""sentence-transformers' ranking, as the reference for the HTTP clients test (main .venv).

Usage: st_rank.py MODEL_DIR < {"query": ..., "documents": [...]}
Prints CrossEncoder(MODEL_DIR).rank(query, documents) as JSON: [{"index", "score"}], best first.
"""

import json
import sys

from sentence_transformers import CrossEncoder


def main(model_dir: str) -> None:
    request = json.load(sys.stdin)
    model = CrossEncoder(model_dir, device="cpu")
    ranked = model.rank(request["query"], request["documents"])
    json.dump([{"index": int(r["corpus_id"]), "score": float(r["score"])} for r in ranked], sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
