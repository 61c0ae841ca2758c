"""Which llama.cpp thread count is fastest for the embedded FIM model on this machine.

Runs the raw runtime (xllamacpp) on the bundled Qwen2.5-Coder-0.5B with 1..N threads,
alternating (1, 2, …, 1, 2, …) to cancel drift, on real FIM prompts from the stdlib, with
the prompt cache off so every request processes its whole prompt. Prints a table, then one
JSON line: {"bench": "threads", "best_threads": n, "by_threads": {n: {...}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from mimiverse.gateway import fim_templates, weights
from mimiverse.settings import Settings


def prompts(count: int) -> list[str]:
    """FIM prompts cut from real stdlib files: ~1500 chars before, ~400 after the cursor."""
    template = fim_templates.get("qwen")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = ["json/decoder.py", "textwrap.py", "shlex.py", "fractions.py", "statistics.py"]
    out = []
    for i in range(count):
        text = (stdlib / files[i % len(files)]).read_text()
        cut = len(text) // 3 + 997 * i % max(1, len(text) // 2)
        out.append(template.render(text[max(0, cut - 1500) : cut], text[cut : cut + 400]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer prompts and rounds")
    args = parser.parse_args()
    import xllamacpp

    load = os.getloadavg()[0]
    if load > 1.5:
        print(f"warning: load average {load:.2f} > 1.5; timings are unreliable", file=sys.stderr)
    gguf = weights.ensure(weights.FIM_05B, Settings().model_path)
    cores = len(os.sched_getaffinity(0))
    counts = list(range(1, cores + 1))
    rounds = 1 if args.quick else 2
    batch = prompts(3 if args.quick else 6)
    servers = {}
    for n in counts:
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = 4096
        params.n_parallel = 1
        params.cpuparams.n_threads = n
        params.cpuparams_batch.n_threads = n
        params.api_keys = [secrets.token_hex(16)]
        params.verbosity = 1
        servers[n] = xllamacpp.Server(params)
    results: dict[int, dict[str, list[float]]] = {n: {"s": [], "pp": [], "tg": []} for n in counts}
    for _ in range(rounds):
        for prompt in batch:
            for n in counts:
                body = {"prompt": prompt, "max_tokens": 32, "temperature": 0, "cache_prompt": False}
                began = time.perf_counter()
                reply = servers[n].handle_completions(body)
                results[n]["s"].append(time.perf_counter() - began)
                results[n]["pp"].append(reply["timings"]["prompt_per_second"])
                results[n]["tg"].append(reply["timings"]["predicted_per_second"])
    summary = {
        n: {
            "request_p50_ms": round(statistics.median(r["s"]) * 1000, 1),
            "prompt_tok_s": round(statistics.median(r["pp"]), 1),
            "gen_tok_s": round(statistics.median(r["tg"]), 1),
        }
        for n, r in results.items()
    }
    print(f"{'threads':>8} {'request p50 ms':>15} {'prompt tok/s':>13} {'gen tok/s':>10}")
    for n, row in summary.items():
        print(
            f"{n:>8} {row['request_p50_ms']:>15} {row['prompt_tok_s']:>13} {row['gen_tok_s']:>10}"
        )
    best = min(summary, key=lambda n: summary[n]["request_p50_ms"])
    print(
        json.dumps(
            {"bench": "threads", "best_threads": best, "cores": cores, "by_threads": summary}
        )
    )


if __name__ == "__main__":
    main()
