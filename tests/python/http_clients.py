"""Real REST client SDKs against a running crossrank HTTP server.

Usage: http_clients.py BASE_URL MODEL EXPECTED.json   (run with .venv-clients/bin/python)

EXPECTED.json is written by tests/http/clients.rs:
  query, documents, top_n      what every client reranks
  reference                    [{index, score}] of sentence-transformers' CrossEncoder.rank, best first
  grpc                         [{index, score}] of crossrank's gRPC Rerank on the same input
  api_key                      the key the server requires (null: it requires none)
  queue_limit                  the model's max_queue_pairs (null: skip the 429 check)

Each client (cohere ClientV2 and Client, LangChain's CohereRerank, LlamaIndex's TEI and Cohere
postprocessors) reranks the same query and documents. Its order must be the gRPC order, each
score within 1e-5 of sentence-transformers' and equal to the gRPC score as an f32. Then the typed
errors each status maps to. Exits 1 with the client and the mismatch on the first failure.
"""

import json
import struct
import sys

import cohere
import httpx

TOLERANCE = 1e-5
WRONG_KEY = "not-a-key-of-this-server"


class Mismatch(Exception):
    pass


def f32(x: float) -> bytes:
    return struct.pack("<f", x)


def check(name: str, got: list[tuple[int, float]], ctx: dict, n: int) -> float:
    """`got` is a client's (index, score) list in its order; returns its largest |delta| to the
    reference."""
    want_order = [r["index"] for r in ctx["grpc"][:n]]
    if [i for i, _ in got] != want_order:
        raise Mismatch(f"{name}: order {[i for i, _ in got]} differs from gRPC Rerank's {want_order}")
    reference = {r["index"]: r["score"] for r in ctx["reference"]}
    grpc = {r["index"]: r["score"] for r in ctx["grpc"]}
    worst = 0.0
    for index, score in got:
        delta = abs(score - reference[index])
        if delta > TOLERANCE:
            raise Mismatch(f"{name}: document {index} scored {score}; sentence-transformers says "
                           f"{reference[index]} (|delta| {delta:.2e} > {TOLERANCE})")
        if f32(score) != f32(grpc[index]):
            raise Mismatch(f"{name}: document {index} scored {score}; gRPC Rerank said {grpc[index]}")
        worst = max(worst, delta)
    print(f"{name}: {len(got)} results, order and scores as gRPC, max |delta| {worst:.1e} vs sentence-transformers")
    return worst


def key(ctx: dict) -> str:
    # The SDKs refuse to start without some key; a server without keys ignores it.
    return ctx["api_key"] or "unused"


def cohere_v2(base: str, model: str, ctx: dict) -> None:
    co = cohere.ClientV2(api_key=key(ctx), base_url=base)
    r = co.rerank(model=model, query=ctx["query"], documents=ctx["documents"], top_n=ctx["top_n"])
    check("cohere ClientV2.rerank", [(x.index, x.relevance_score) for x in r.results], ctx, ctx["top_n"])


def cohere_v1(base: str, model: str, ctx: dict) -> None:
    co = cohere.Client(api_key=key(ctx), base_url=base)
    docs = ctx["documents"]
    r = co.rerank(model=model, query=ctx["query"], documents=docs, top_n=ctx["top_n"], return_documents=True)
    check("cohere Client.rerank (v1)", [(x.index, x.relevance_score) for x in r.results], ctx, ctx["top_n"])
    for x in r.results:
        if x.document is None or x.document.text != docs[x.index]:
            raise Mismatch(f"cohere v1: return_documents gave {x.document!r} for document {x.index}")
    # Documents as objects (Cohere v1 and Jina accept {"text": ...}), model left to the server.
    r = co.rerank(query=ctx["query"], documents=[{"text": d} for d in docs])
    check("cohere Client.rerank (v1, {text} documents, no model)",
          [(x.index, x.relevance_score) for x in r.results], ctx, len(docs))


def langchain(base: str, model: str, ctx: dict) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    docs = ctx["documents"]
    rerank = CohereRerank(cohere_api_key=key(ctx), base_url=base, model=model, top_n=ctx["top_n"])
    out = rerank.compress_documents([Document(page_content=d) for d in docs], ctx["query"])
    got = [(docs.index(d.page_content), d.metadata["relevance_score"]) for d in out]
    check("langchain_cohere CohereRerank.compress_documents", got, ctx, ctx["top_n"])


def nodes(docs: list[str]):
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(docs)]


def llama_tei(base: str, model: str, ctx: dict) -> None:
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    # LlamaIndex's TEI client sends auth_token as the bare Authorization header (no "Bearer").
    post = TextEmbeddingInference(base_url=base, top_n=ctx["top_n"], auth_token=ctx["api_key"])
    out = post.postprocess_nodes(nodes(ctx["documents"]), query_str=ctx["query"])
    check("llama_index TextEmbeddingInference (TEI /rerank)", [(int(n.node.id_), n.score) for n in out],
          ctx, ctx["top_n"])


def llama_cohere(base: str, model: str, ctx: dict) -> None:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    post = CohereRerank(top_n=ctx["top_n"], model=model, api_key=key(ctx), base_url=base)
    out = post.postprocess_nodes(nodes(ctx["documents"]), query_str=ctx["query"])
    check("llama_index CohereRerank", [(int(n.node.id_), n.score) for n in out], ctx, ctx["top_n"])


def expect_error(name: str, error: type, call) -> Exception:
    try:
        call()
    except error as e:
        message = e.body.get("message") if isinstance(e.body, dict) else None
        if not isinstance(message, str) or not message:
            raise Mismatch(f"{name}: {error.__name__} without a message: body {e.body!r}")
        print(f"{name}: {error.__name__} ({e.status_code}): {message}")
        return e
    except Exception as e:  # noqa: BLE001 - any other outcome is the failure being reported
        raise Mismatch(f"{name}: expected {error.__name__}, got {type(e).__name__}: {e}") from e
    raise Mismatch(f"{name}: expected {error.__name__}, the call succeeded")


def cohere_errors(base: str, model: str, ctx: dict) -> None:
    co = cohere.ClientV2(api_key=key(ctx), base_url=base)
    q, docs = ctx["query"], ctx["documents"]
    no_retry = {"max_retries": 0}
    expect_error("400 empty documents", cohere.BadRequestError,
                 lambda: co.rerank(model=model, query=q, documents=[]))
    expect_error("404 unknown model", cohere.NotFoundError,
                 lambda: co.rerank(model="no-such-model", query=q, documents=docs))
    if ctx["api_key"] is not None:
        for name, client in [("v2", cohere.ClientV2), ("v1", cohere.Client)]:
            wrong = client(api_key=WRONG_KEY, base_url=base)
            expect_error(f"401 wrong key ({name})", cohere.UnauthorizedError,
                         lambda: wrong.rerank(model=model, query=q, documents=docs))
    if ctx["queue_limit"] is not None:
        more = [f"document {i}" for i in range(ctx["queue_limit"] + 1)]
        e = expect_error("429 queue full", cohere.TooManyRequestsError,
                         lambda: co.rerank(model=model, query=q, documents=more, request_options=no_retry))
        if "retry-after" not in {k.lower() for k in (e.headers or {})}:
            raise Mismatch(f"429 without Retry-After: headers {e.headers}")


def langchain_errors(base: str, model: str, ctx: dict) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    if ctx["api_key"] is None:
        return
    rerank = CohereRerank(cohere_api_key=WRONG_KEY, base_url=base, model=model)
    docs = [Document(page_content=d) for d in ctx["documents"]]
    expect_error("401 wrong key (langchain)", cohere.UnauthorizedError,
                 lambda: rerank.compress_documents(docs, ctx["query"]))


def llama_tei_wrong_key(base: str, model: str, ctx: dict) -> None:
    """The TEI postprocessor reads no status; a 401 must still not come back as a ranking."""
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    if ctx["api_key"] is None:
        return
    post = TextEmbeddingInference(base_url=base, top_n=ctx["top_n"], auth_token=WRONG_KEY)
    try:
        out = post.postprocess_nodes(nodes(ctx["documents"]), query_str=ctx["query"])
    except Exception as e:  # noqa: BLE001 - it raises whatever the error body trips over
        print(f"401 wrong key (llama_index TEI): {type(e).__name__} inside the postprocessor")
        return
    raise Mismatch(f"llama_index TEI with a wrong key returned {len(out)} nodes")


def tei_errors(base: str, model: str, ctx: dict) -> None:
    """The TEI routes' error shape, with plain httpx (the TEI postprocessor reads no status):
    no texts is 400 `empty` and a field out of its range 422 `validation`, as TEI answers."""
    headers = {"Authorization": f"Bearer {ctx['api_key']}"} if ctx["api_key"] else {}
    cases = [
        ("no texts", {"query": ctx["query"], "texts": []}, 400, "empty"),
        ("truncation_direction Sideways",
         {"query": ctx["query"], "texts": ctx["documents"], "truncation_direction": "Sideways"}, 422, "validation"),
    ]
    for name, body, status, error_type in cases:
        r = httpx.post(f"{base}/rerank", json=body, headers=headers, timeout=60)
        got = r.json()
        if r.status_code != status or not isinstance(got, dict) or not got.get("error") \
                or got.get("error_type") != error_type:
            raise Mismatch(f"TEI /rerank with {name}: {r.status_code} {r.text}; "
                           f"want {status} {{error, error_type: {error_type}}}")
        print(f"{status} TEI /rerank with {name}: {got['error']}")


def main(base: str, model: str, expected: str) -> None:
    with open(expected) as f:
        ctx = json.load(f)
    steps = [cohere_v2, cohere_v1, langchain, llama_tei, llama_cohere,
             cohere_errors, langchain_errors, llama_tei_wrong_key, tei_errors]
    try:
        for step in steps:
            step(base.rstrip("/"), model, ctx)
    except Mismatch as e:
        sys.exit(f"MISMATCH {e}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
