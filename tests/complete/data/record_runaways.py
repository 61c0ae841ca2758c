"""Record real runaway outputs of the bundled 0.5B for the stop-rule tests.

    .venv/bin/python tests/complete/data/record_runaways.py   # writes runaways.json here

Cursors, per file: ``line-start`` (the start of the last body line of a method that another
method follows: the model writes that line again, then the next method), ``mid-line``, and
``new-body`` (a method's body removed, the cursor on the empty line after its ``def``: the
model writes a body, then runs on into the method after it).
Generation: the raw FIM prompt, temperature 0, 96 tokens, no stop but the template's.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import random
import sysconfig
from pathlib import Path

from mimiverse.gateway import weights
from mimiverse.gateway.backends.embedded import EmbeddedBackend
from mimiverse.gateway.base import FimRequest
from mimiverse.settings import Settings

FILES = ["heapq.py", "textwrap.py", "shlex.py", "fractions.py", "calendar.py", "gettext.py"]
OUT = Path(__file__).with_name("runaways.json")


def cursors(text: str, rng: random.Random) -> list[tuple[int, str]]:
    """(offset, kind) for one end-of-method cursor and one mid-line cursor in ``text``."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
        for a, b in itertools.pairwise(methods):
            last = a.body[-1]
            if a.end_lineno and b.lineno - a.end_lineno >= 2 and last.lineno == last.end_lineno:
                line = lines[last.lineno - 1]
                indent = len(line) - len(line.lstrip())
                out.append((starts[last.lineno - 1] + indent, "line-start"))
                break
        if out:
            break
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and len(n.body) > 2]
    if funcs:
        f = rng.choice(funcs)
        stmt = f.body[1]
        line = lines[stmt.lineno - 1].rstrip("\n")
        indent = len(line) - len(line.lstrip())
        out.append(
            (starts[stmt.lineno - 1] + indent + max(1, (len(line) - indent) // 3), "mid-line")
        )
    return out


def new_body(text: str) -> tuple[str, str] | None:
    """(prefix, suffix) with one method's body removed, the cursor where it started."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
        for a, _next in itertools.pairwise(methods):
            first = a.body[0]
            if a.end_lineno is None or first.lineno == a.lineno or isinstance(first, ast.Expr):
                continue
            indent = lines[first.lineno - 1][: first.col_offset]
            prefix = "".join(lines[: first.lineno - 1]) + indent
            suffix = "\n" + "".join(lines[a.end_lineno :])
            return prefix, suffix
    return None


async def main() -> None:
    rng = random.Random(20261121)
    path = weights.ensure(weights.FIM_05B, Settings().model_path)
    backend = EmbeddedBackend(
        "rec", path, tasks=("fim",), context_length=4096, parallel=1, threads=1
    )
    await backend.start()
    root = Path(sysconfig.get_paths()["stdlib"])
    records = []
    for name in FILES:
        text = (root / name).read_text("utf-8")
        for offset, kind in cursors(text, rng):
            prefix, suffix = text[:offset][-1500:], text[offset:][:400]
            request = FimRequest(prefix=prefix, suffix=suffix, max_tokens=96, temperature=0.0)
            raw = "".join([d.text async for d in backend.fim_stream(request)])
            records.append(
                {"file": name, "kind": kind, "prefix": prefix, "suffix": suffix, "raw": raw}
            )
            print(f"{name} {kind}: {raw[:120]!r}", flush=True)
        body = new_body(text)
        if body is not None:
            prefix, suffix = body[0][-1500:], body[1][:400]
            request = FimRequest(prefix=prefix, suffix=suffix, max_tokens=96, temperature=0.0)
            raw = "".join([d.text async for d in backend.fim_stream(request)])
            records.append(
                {"file": name, "kind": "new-body", "prefix": prefix, "suffix": suffix, "raw": raw}
            )
            print(f"{name} new-body: {raw[:120]!r}", flush=True)
    await backend.close()
    OUT.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
