"""Run llama.cpp's own HTTP server (from the xllamacpp wheel) as a real upstream for tests.

::

    python -m mimiverse.testing_llama_server --model PATH [--port N] [--embedding]

Prints ``listening http://127.0.0.1:N`` once the model is loaded, then serves the
OpenAI-compatible API (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/health``, ``/props``) until SIGTERM or SIGINT. ``--port 0`` (the
default) lets the OS pick a free port: read it from the printed address.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any


def build_params(
    model: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    embedding: bool = False,
    n_ctx: int = 2048,
    parallel: int = 2,
    threads: int = 1,
) -> Any:
    """``xllamacpp.CommonParams`` for a small loopback test server."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_ctx = n_ctx
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.port = port
    if isinstance(getattr(params, "hostnames", None), list):
        params.hostnames = [host]
    else:
        params.hostname = host
    if embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    return params


def main(argv: list[str] | None = None) -> int:
    """Start the server, print its address, serve until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m mimiverse.testing_llama_server")
    parser.add_argument("--model", required=True, help="GGUF file to serve")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any free port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings (mean)")
    parser.add_argument("--ctx", type=int, default=2048, help="context tokens, shared by slots")
    parser.add_argument("--parallel", type=int, default=2, help="parallel request slots")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args(argv)

    import xllamacpp

    params = build_params(
        args.model,
        port=args.port,
        host=args.host,
        embedding=args.embedding,
        n_ctx=args.ctx,
        parallel=args.parallel,
        threads=args.threads,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(params)  # loads the model and starts listening
    print(f"listening {server.listening_address}", flush=True)
    while not stop.wait(0.5):
        pass
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
