"""Backups as signed snapshots: every log of a replica in one file, and a checked restore.

A snapshot holds what a replica holds — every author's blocks (their wire bytes, as
stored and signed), the fork proofs, the mesh id, the device that made it and its tree
heads — and nothing secret: no device key, no open invite. A file is ``MAGIC`` then
records, each a 4-byte big-endian length and one canonical CBOR map::

    {"t": "header", "format": 1, "mesh": id, "device": author, "key": signing key,
     "epoch": key epoch, "created_ms": int, "blocks": n, "peers": [url, …],
     "logs": [[author, size, head hash, Merkle root], …],  the owner's first
     "forks": [[author, seq], …]}
    {"t": "block", "data": wire block}    the owner's log, in seq order
    {"t": "fork", "proof": fork proof}    every fork proof
    {"t": "block", "data": wire block}    every other log, author by author, in seq order
    {"t": "trailer", "blocks": n, "forks": m, "digest": SHA-256 of the file before it}
    {"t": "signature", "signature": Ed25519 by the device's key (purpose ``snapshot``)
                                    over SHA-256(header record) || SHA-256(trailer record)}

Records come in the order a restore replays them: the owner's log defines the roster,
fork proofs need the roster, every other log needs both. Files are written and read as
streams (no whole-file buffer), written atomically with mode 0600.

``read_snapshot_info`` checks a file's digest and signature. ``restore_snapshot`` also
replays every block through ``Replica.receive`` (signatures, chains, roster: the checks a
peer's blocks get) into a fresh store, and keeps it only if the signer is on the restored
roster, nothing was refused, and every log's size, head and Merkle root equal the
snapshot's. Restoring needs the device's own key file, kept apart from the backups; a new
device joins the mesh (``mimiverse mesh join``) and syncs instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from mimiverse.mesh import codec
from mimiverse.mesh.blocks import Block
from mimiverse.mesh.codec import Value
from mimiverse.mesh.errors import MeshRejected, NotCanonical
from mimiverse.mesh.hlc import wall_ms
from mimiverse.mesh.identity import KEY_SIZE, SIGNATURE_SIZE, DeviceKey, fingerprint, verify
from mimiverse.mesh.replica import RESTORED_META, STORE_NAME, Replica
from mimiverse.mesh.service import KEY_NAME, save_peers, saved_peers
from mimiverse.mesh.store import MeshStore
from mimiverse.mesh.validate import Report

MAGIC = b"MIMISNAP"
FORMAT = 1
PURPOSE = b"snapshot"
SUFFIX = ".mimisnap"
MAX_RECORD_BYTES = 16 << 20  # the header of a very large mesh; blocks are far smaller
MAX_PEERS = 64
MAX_PEER_CHARS = 300
CHUNK = 512  # blocks read from the store, or replayed, at a time
_HASH = 32


class SnapshotRefused(MeshRejected):
    """A snapshot that cannot be written, read or restored; the message says why."""

    code = "mesh_snapshot_refused"

    def __init__(self, message: str, *, reason: str = "bad snapshot") -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class LogHead:
    """One author's log as the snapshot holds it."""

    size: int
    head: bytes
    root: bytes


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot holds, read from a file whose digest and signature checked out."""

    path: Path
    format: int
    mesh: bytes
    device: bytes
    key: bytes
    epoch: int
    created_ms: int
    logs: dict[bytes, LogHead]
    forks: dict[bytes, int]
    blocks: int
    peers: list[str]
    size_bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.path.name,
            "format": self.format,
            "mesh": fingerprint(self.mesh),
            "mesh_id": self.mesh.hex(),
            "device": fingerprint(self.device),
            "device_id": self.device.hex(),
            "created_ms": self.created_ms,
            "blocks": self.blocks,
            "logs": [
                {
                    "author": fingerprint(author),
                    "author_id": author.hex(),
                    "blocks": head.size,
                    "head": head.head.hex(),
                    "root": head.root.hex(),
                }
                for author, head in self.logs.items()
            ],
            "quarantined": [
                {"author": fingerprint(a), "author_id": a.hex(), "fork_at": seq}
                for a, seq in self.forks.items()
            ],
            "bytes": self.size_bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class RestoreSummary:
    """What ``restore_snapshot`` put in place."""

    directory: Path
    info: SnapshotInfo
    device: bytes
    role: str
    own_blocks: int
    state_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.info.to_dict(),
            "device": fingerprint(self.device),
            "device_id": self.device.hex(),
            "role": self.role,
            "blocks": self.info.blocks,
            "own_blocks": self.own_blocks,
            "state_hash": self.state_hash.hex(),
        }


# --- writing ------------------------------------------------------------------------------


def write_snapshot(replica: Replica, path: Path, *, overwrite: bool = False) -> SnapshotInfo:
    """Write every log of ``replica`` to ``path`` (atomically, mode 0600) and sign it.

    Call it while nothing else changes the replica (``MeshService.lock``); a store changed
    underneath (another process) is noticed, and nothing is written.
    """
    if path.exists() and not overwrite:
        raise SnapshotRefused(f"{path} exists: pick another name", reason="exists")
    if replica.roster.holder_of(replica.key.public) is None:
        raise SnapshotRefused(
            "this device's key is not on the roster it holds (not synced since joining, or "
            "revoked): sync with the owner first, or back up from another device",
            reason="unknown device",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _Writer(out)
            header = _header(replica)
            writer.record(header)
            owner_first = replica.authors()
            if owner_first and owner_first[0] == replica.mesh:
                writer.blocks(replica, owner_first.pop(0))
            for _, proof in sorted(replica.fork_proofs().items()):
                writer.record({"t": "fork", "proof": proof.to_bytes()})
                writer.forks += 1
            for author in owner_first:
                writer.blocks(replica, author)
            writer.sign(replica, header)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return read_snapshot_info(path)


def _header(replica: Replica) -> dict[str, Value]:
    logs: list[Value] = []
    for author in replica.authors():
        size = replica.size(author)
        head = cast(bytes, replica.hash_at(author, size))
        logs.append([author, size, head, replica.root(author)])
    forks: list[Value] = [[a, p.seq] for a, p in sorted(replica.fork_proofs().items())]
    return {
        "t": "header",
        "format": FORMAT,
        "mesh": replica.mesh,
        "device": replica.author,
        "key": replica.key.public,
        "epoch": replica.epoch,
        "created_ms": wall_ms(),
        "blocks": sum(replica.size(a) for a in replica.authors()),
        "peers": list[Value](saved_peers(replica)[:MAX_PEERS]),
        "logs": logs,
        "forks": forks,
    }


class _Writer:
    """Length-prefixed records, hashed as they go out."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256(MAGIC)
        self.blocks_written = 0
        self.forks = 0
        out.write(MAGIC)

    def record(self, value: dict[str, Value], *, hashed: bool = True) -> bytes:
        data = codec.encode(value)
        framed = len(data).to_bytes(4, "big") + data
        self.out.write(framed)
        if hashed:
            self.digest.update(framed)
        return data

    def blocks(self, replica: Replica, author: bytes) -> None:
        size = replica.size(author)
        for first in range(1, size + 1, CHUNK):
            last = min(size, first + CHUNK - 1)
            rows = replica.block_bytes(author, first, last)
            for seq, data in enumerate(rows, first):
                if Block.from_bytes(data).hash != replica.hash_at(author, seq):
                    rows = []
                    break
            if len(rows) != last - first + 1:
                raise SnapshotRefused(
                    "the mesh store changed while the snapshot was written "
                    "(another process syncing?): write it again",
                    reason="changed",
                )
            for data in rows:
                self.record({"t": "block", "data": data})
            self.blocks_written += len(rows)

    def sign(self, replica: Replica, header: dict[str, Value]) -> None:
        trailer = self.record(
            {
                "t": "trailer",
                "blocks": self.blocks_written,
                "forks": self.forks,
                "digest": self.digest.digest(),
            },
            hashed=False,
        )
        message = _signed_message(codec.encode(header), trailer)
        self.record(
            {"t": "signature", "signature": replica.key.sign(PURPOSE, replica.mesh, message)},
            hashed=False,
        )


def _signed_message(header: bytes, trailer: bytes) -> bytes:
    return hashlib.sha256(header).digest() + hashlib.sha256(trailer).digest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading ------------------------------------------------------------------------------

Visit = Callable[[Literal["block", "fork"], bytes], None]


def read_snapshot_info(path: Path) -> SnapshotInfo:
    """What the snapshot at ``path`` holds; refuses a file whose digest or signature fails.

    This proves the file is exactly what the named device key signed. Whether that key
    belongs to the mesh is known only from the roster inside: ``restore_snapshot`` checks it.
    """
    return _read(path, None)


def _read(path: Path, visit: Visit | None) -> SnapshotInfo:
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise SnapshotRefused(f"no snapshot at {path}", reason="missing") from None
    with stream:
        reader = _Reader(stream)
        header_bytes, header = reader.next_record()
        if header.get("t") != "header":
            raise _damaged("it does not start with a header")
        info = _parse_header(path, header)
        blocks = forks = 0
        while True:
            data, record = reader.next_record(hashed=False)
            match record:
                case {"t": "trailer"}:
                    break
                case {"t": "block", "data": bytes(payload)} if len(record) == 2:
                    blocks += 1
                    if visit is not None:
                        visit("block", payload)
                case {"t": "fork", "proof": bytes(payload)} if len(record) == 2:
                    forks += 1
                    if visit is not None:
                        visit("fork", payload)
                case _:
                    raise _damaged(f"unexpected record {record.get('t')!r}")
            reader.digest.update(len(data).to_bytes(4, "big") + data)
        expected = {
            "t": "trailer",
            "blocks": blocks,
            "forks": forks,
            "digest": reader.digest.digest(),
        }
        if record != expected or (blocks, forks) != (info.blocks, len(info.forks)):
            raise _damaged("its contents do not match its digest or counts")
        trailer = data
        signed = reader.next_record(hashed=False)[1]
        match signed:
            case {"t": "signature", "signature": bytes(signature)} if (
                len(signed) == 2 and len(signature) == SIGNATURE_SIZE
            ):
                pass
            case _:
                raise _damaged("the signature record is missing")
        if stream.read(1):
            raise _damaged("there are bytes after the signature")
        message = _signed_message(header_bytes, trailer)
        if not verify(info.key, PURPOSE, info.mesh, message, signature):
            raise SnapshotRefused(
                f"{path.name} is not signed by the device key it names: it was altered",
                reason="bad signature",
            )
    return dataclasses.replace(info, size_bytes=reader.size, sha256=reader.whole.hexdigest())


class _Reader:
    """Length-prefixed canonical CBOR records, hashed as they come in."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.whole = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.size = 0
        if self._exactly(len(MAGIC)) != MAGIC:
            raise _damaged("it is not a Mimiverse mesh snapshot")
        self.digest.update(MAGIC)

    def _exactly(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise SnapshotRefused(
                f"the snapshot is truncated: {self.size + len(data)} bytes and no signature "
                "yet (an interrupted copy?)",
                reason="truncated",
            )
        self.whole.update(data)
        self.size += count
        return data

    def next_record(self, *, hashed: bool = True) -> tuple[bytes, dict[str, Value]]:
        prefix = self._exactly(4)
        length = int.from_bytes(prefix, "big")
        if length > MAX_RECORD_BYTES:
            raise _damaged(f"a record of {length} bytes is over {MAX_RECORD_BYTES}")
        data = self._exactly(length)
        try:
            value = codec.decode(data)
        except NotCanonical as exc:
            raise _damaged(f"a record is not canonical CBOR ({exc.message})") from None
        if not isinstance(value, dict):
            raise _damaged("a record is not a map")
        if hashed:
            self.digest.update(prefix + data)
        return data, value


def _damaged(what: str) -> SnapshotRefused:
    return SnapshotRefused(f"the snapshot is damaged: {what}", reason="damaged")


_HEADER_KEYS = {
    "t", "format", "mesh", "device", "key", "epoch", "created_ms", "blocks", "peers", "logs",
    "forks",
}  # fmt: skip


def _parse_header(path: Path, header: dict[str, Value]) -> SnapshotInfo:
    version = header.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
        raise SnapshotRefused(
            f"{path.name} is snapshot format {version}; this Mimiverse reads format "
            f"{FORMAT}: upgrade Mimiverse to restore it",
            reason="newer format",
        )
    if version != FORMAT or set(header) != _HEADER_KEYS:
        raise _damaged("the header is not a format-1 header")
    mesh, device, key = (_bytes(header[k], KEY_SIZE) for k in ("mesh", "device", "key"))
    logs: dict[bytes, LogHead] = {}
    for entry in _list(header["logs"]):
        match entry:
            case [bytes(author), int(size), bytes(head), bytes(root)] if (
                size > 0 and author not in logs
            ):
                logs[_bytes(author, KEY_SIZE)] = LogHead(size, _bytes(head), _bytes(root))
            case _:
                raise _damaged("a log entry is not [author, size, head, root]")
    forks: dict[bytes, int] = {}
    for entry in _list(header["forks"]):
        match entry:
            case [bytes(author), int(seq)] if seq > 0 and author not in forks:
                forks[_bytes(author, KEY_SIZE)] = seq
            case _:
                raise _damaged("a fork entry is not [author, seq]")
    peers = _list(header["peers"])
    if len(peers) > MAX_PEERS or not all(
        isinstance(p, str) and len(p) <= MAX_PEER_CHARS for p in peers
    ):
        raise _damaged("the peer list is not a short list of addresses")
    blocks = _nat(header["blocks"])
    if blocks != sum(h.size for h in logs.values()):
        raise _damaged("the block count does not add up")
    return SnapshotInfo(
        path, FORMAT, mesh, device, key, _nat(header["epoch"]), _nat(header["created_ms"]),
        logs, forks, blocks, cast(list[str], peers), 0, "",
    )  # fmt: skip


def _bytes(value: Value, size: int = _HASH) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise _damaged(f"expected {size} bytes in the header")
    return value


def _nat(value: Value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _damaged("expected a natural number in the header")
    return value


def _list(value: Value) -> list[Value]:
    if not isinstance(value, list):
        raise _damaged("expected a list in the header")
    return value


# --- restoring ----------------------------------------------------------------------------


def restore_snapshot(path: Path, directory: Path, key: DeviceKey) -> RestoreSummary:
    """Rebuild this device's mesh store in ``directory`` from the snapshot at ``path``.

    ``directory`` must hold no mesh: it may be missing, empty, or hold only the device key
    file (and a store's lock file). ``key`` is this device's own key (backed up apart from snapshots: a snapshot
    never holds one); it must be on the snapshot's roster. Every block is validated as if
    a peer sent it; the store appears only once everything checked out, else nothing does.
    Sync before writing: blocks this device wrote after the snapshot live on its peers, and
    writing first would put a second block at their seq (a fork: the device is quarantined).
    """
    _check_empty(directory)
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    work = directory / f".restore-{secrets.token_hex(4)}"
    work.mkdir(mode=0o700)
    try:
        summary = _restore_into(path, work, key)
        target = directory / STORE_NAME
        if target.exists():
            raise SnapshotRefused(f"{directory} got a mesh while restoring: nothing restored")
        os.replace(work / STORE_NAME, target)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return RestoreSummary(directory, *summary)


def _check_empty(directory: Path) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise SnapshotRefused(f"{directory} is not a folder", reason="not empty")
    extra = sorted(
        p.name
        for p in directory.iterdir()
        if p.name not in (KEY_NAME, f"{STORE_NAME}.lock")
        and not p.name.startswith(".restore-")  # an interrupted restore
    )
    if extra:
        shown = ", ".join(extra[:5]) + (" …" if len(extra) > 5 else "")
        raise SnapshotRefused(
            f"{directory} is not empty ({shown}): restore into a new folder (with --dir), "
            "or move the old mesh away first",
            reason="not empty",
        )


def _restore_into(
    path: Path, work: Path, key: DeviceKey
) -> tuple[SnapshotInfo, bytes, str, int, bytes]:
    """Replay the snapshot into ``work/mesh.sqlite3``; (info, device, role, own, state)."""
    replica = Replica(MeshStore(work / STORE_NAME), key, mesh=_mesh_of(path))
    try:
        replay = _Replay(replica)
        with replica.batch():
            info = _read(path, replay.take)  # the digest and signature are checked at the end
            replay.flush()
        replay.check(info)
        holder = replica.roster.holder_of(key.public)
        if holder is None:
            raise SnapshotRefused(
                "this device's key is not on the snapshot's roster: restore with the key "
                "file of the device that belongs to this mesh, or set this device up as a "
                "new one (`mimiverse mesh join`) and sync",
                reason="unknown device",
            )
        device, epoch, role = holder.author, holder.current.epoch, holder.current.role
        with replica.store.transaction():
            replica.store.set_meta("author", device)
            replica.store.set_meta("epoch", str(epoch).encode())
            replica.store.set_meta(RESTORED_META, b"1")  # no writes before a sync
            save_peers(replica, list(info.peers))
        state = replica.state_hash()
    finally:
        replica.close()
    reopened = Replica.open(work, key)  # what the next start will load, checked once more
    try:
        replay = _Replay(reopened)
        replay.check(info)
        if reopened.state_hash() != state or reopened.author != device:
            raise SnapshotRefused(
                "the restored store does not load back the same: nothing restored"
            )
        own = reopened.size(device)
        reopened.store.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        reopened.close()
    _fsync_file(work / STORE_NAME)
    return info, device, role, own, state


def _mesh_of(path: Path) -> bytes:
    """The mesh id in a snapshot's header (nothing else is trusted yet)."""
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise SnapshotRefused(f"no snapshot at {path}", reason="missing") from None
    with stream:
        _, header = _Reader(stream).next_record()
    if header.get("t") != "header":
        raise _damaged("it does not start with a header")
    return _parse_header(path, header).mesh


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Replay:
    """Feeds a snapshot's records to a replica in chunks, as a peer's blocks."""

    replica: Replica
    report: Report = field(default_factory=Report)
    pending: list[bytes] = field(default_factory=list)

    def take(self, kind: Literal["block", "fork"], data: bytes) -> None:
        if kind == "fork":
            self.flush()
            self.replica.receive_fork_proofs([data], self.report)
            return
        self.pending.append(data)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.report.merge(self.replica.receive(self.pending))
            self.pending = []

    def check(self, info: SnapshotInfo) -> None:
        """Refuse unless every record was taken and the logs are the snapshot's, exactly."""
        replica = self.replica
        if self.report.counts or self.report.waiting:
            first = self.report.rejected[0] if self.report.rejected else None
            detail = f"{first.reason}: {first.detail}" if first else "blocks were left waiting"
            raise SnapshotRefused(
                f"the snapshot holds blocks this mesh refuses ({detail}): nothing restored",
                reason="refused blocks",
            )
        held = {
            a: LogHead(replica.size(a), cast(bytes, replica.hash_at(a, replica.size(a))), r)
            for a, r in replica.merkle_roots().items()
        }
        forks = {a: p.seq for a, p in replica.fork_proofs().items()}
        if held != info.logs or forks != info.forks:
            raise SnapshotRefused(
                "the restored logs do not match the snapshot's heads and Merkle roots: "
                "nothing restored",
                reason="mismatch",
            )
        signer = replica.roster.holder_of(info.key)
        if signer is None or signer.author != info.device:
            raise SnapshotRefused(
                "the snapshot is signed by a key its own roster does not give to its "
                "device: it was not made by a device of this mesh",
                reason="unknown signer",
            )


def snapshot_name(replica: Replica, now_ms: int | None = None) -> str:
    """A file name for a new snapshot of ``replica``: ``mesh-<UTC time>-<device>.mimisnap``."""
    import datetime

    moment = datetime.datetime.fromtimestamp((now_ms or wall_ms()) / 1000, datetime.UTC)
    device = fingerprint(replica.author).split("-")[0].lower()
    return f"mesh-{moment:%Y%m%dT%H%M%S%fZ}-{device}{SUFFIX}"


def iter_snapshots(directory: Path) -> Iterator[Path]:
    """Snapshot files in ``directory``, oldest name first."""
    if directory.is_dir():
        yield from sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
