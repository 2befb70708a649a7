"""Python helpers shared by bench/, scripts/ and tests/.

scripts/env.sh puts python/ on PYTHONPATH (every script under bench/ and scripts/ sources it, and so
does scripts/test.sh for the Rust tests that start Python), so any of them imports these as
`from crossrank_tools import corpus`.

- corpus: a deterministic corpus of (query, passage) pairs from the standard library's docstrings;
- default_model: the recipe of the default demo model, models/minilm-ce (scripts/make_default_model.py);
- grpc_stubs: Python gRPC stubs generated from proto/ into a temporary directory.
"""
