"""The mesh: a person's or team's devices syncing signed knowledge peer to peer.

This package is the pure-logic core (no network); ``transport/`` carries its messages
between devices as opaque bytes. Modules, one job each::

    codec.py     canonical CBOR: one encoding per value, strict decoder
    identity.py  Ed25519 device keys (PyNaCl), 0600 key files, invites, join requests
    hlc.py       hybrid logical clock, one packed int
    blocks.py    Block (signed, hashed log entry), ForkProof
    roster.py    owner-signed roster: add / role / revoke / rotate, terms per seq
    payloads.py  what each block kind carries (builders and checks)
    merkle.py    RFC 6962 trees: MerkleLog, inclusion/consistency proofs and verifiers
    validate.py  check_block → Verdict; Report of accepted and refused blocks
    pending.py   bounded buffer of blocks that arrived before the ones they follow
    state.py     merged state: LWW maps, OR-set, pycrdt docs; state_hash
    store.py     SQLite (mesh.sqlite3): blocks, fork proofs, meta, invites
    sync.py      vector / delta messages, diff, fork probes
    replica.py   Replica: one device's logs + roster + state + sync entry points
    loopback.py  sync_pair: two replicas in one process (tests, benchmarks)

Identity and authority
    A device is named by its first Ed25519 public key (``author``); the mesh by the
    owner's public key (``mesh``). The roster is the fold of ``roster`` blocks in the
    owner's log; each device has *terms* (from a seq on: key epoch, key, role, revoked),
    so whether a block is valid never depends on when a replica heard of a change. A
    rotation is signed by the old key (``old_sig``) and by the owner (the block). Roles:
    owner, member, read-only (may sync, may not write). Invites: ``Invite.to_text()``
    (QR) or ``Invite.code()`` (16 characters); the joiner sends a ``JoinRequest`` (its
    key, an HMAC under the invite secret, its signature); ``Replica.admit`` adds it.

What is signed
    Every signature is Ed25519 over ``"mimiverse-mesh/v1/" purpose 0x00 mesh message``
    (purposes: ``block``, ``rotate``, ``join``), so it is bound to one use and one mesh.
    A block's body is canonical CBOR ``[1, author, seq, prev_hash, hlc, key_epoch, kind,
    payload]``; its hash is SHA-256(body); it is signed (purpose ``block``) over that hash
    with the author's key for ``key_epoch``. Wire form: canonical CBOR ``[body,
    signature]``, at most ``blocks.MAX_BLOCK_BYTES`` (64 KiB). seq counts from 1;
    ``prev_hash`` of block 1 is 32 zero bytes; hlc strictly increases along a log. The
    Merkle leaf of a block is ``SHA-256(0x00 || block hash)``; each author's log has an
    RFC 6962 tree. Kinds: note, decision, snippet, setting (LWW maps), memory (OR-set),
    crdt-update (Yjs update for a named pycrdt doc), roster (owner only).

Validation (``validate.check_block``; every refusal is reported with its reason)
    replayed · author quarantined · unknown author · revoked key · unknown/wrong key
    epoch · bad signature · equivocation (a second valid block at a held (author, seq):
    a ``ForkProof``, the author is quarantined — its log is cut before the fork and it
    is capped there on every replica — and the proof is gossiped) · sequence gap
    (buffered in bounded per-author buffers, not accepted) · wrong prev_hash · hlc not
    increasing · read-only device · not owner · bad payload; decoding refuses oversized
    and malformed (non-canonical) blocks first.

Sync protocol (``sync.py``; messages are canonical CBOR, see its docstring for shapes)
    ``vector`` = {author: (seq, head hash)} + the fork proofs held + ``reply`` flag;
    ``delta`` = per author the blocks after the peer's head, the sender's (size, root)
    and an RFC 6962 consistency proof from the peer's head to it (checked against the
    receiver's own root before any block is taken), plus fork proofs the peer lacks.
    Exact version vectors, never Bloom filters. A transport does only this::

        peer.send(replica.vector().to_message())          # to start (or periodically)
        replies, report = replica.handle(received_bytes)  # for every message received
        for reply in replies: peer.send(reply)            # back to the same peer

    An exchange always goes quiet: replies to a vector are a delta and (once) our
    vector; a delta is answered only when it made progress and said ``more``, or
    brought a new fork proof. Messages are at most ``sync.MAX_MESSAGE_BYTES``.

Merged state
    LWW maps keyed by (hlc, author), with ``base`` lists to report concurrent writes;
    an observed-remove set for memories; pycrdt documents changed only by applying the
    updates of validated blocks. Everything commutes, so replicas holding the same logs
    have the same ``Replica.state_hash()`` (state + roster + quarantined authors).
"""
