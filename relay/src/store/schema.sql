-- The relay's SQLite schema. Every statement is idempotent: it runs on each start.
-- Times are Unix milliseconds; amounts are integers (1 credit = 1 verified FLOP).

-- Content-addressed bytes kept in the database: unit outputs (stored with their result in one
-- transaction), and the inputs and job outputs of databases from before the blob store on disk.
CREATE TABLE IF NOT EXISTS blobs (
    hash  TEXT PRIMARY KEY,          -- SHA-256 of bytes, 64 lowercase hex characters
    bytes BLOB NOT NULL
);

-- API keys of requesters (relay/src/requesters.rs): only the SHA-256 of each key is kept.
CREATE TABLE IF NOT EXISTS requesters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    key_hash      TEXT NOT NULL UNIQUE,  -- SHA-256 of the key, 64 lowercase hex characters
    quota_units   INTEGER NOT NULL,      -- most units of its queued jobs at once
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

-- Custom WGSL kernels submitted with kernel jobs, named like catalogue kernels by the SHA-256
-- of their WGSL.
CREATE TABLE IF NOT EXISTS kernels (
    hash          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    entry_point   TEXT NOT NULL,
    wgsl          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- A job: a matrix product C (m x n) = A (m x k) * B (k x n) split into tiles, or a custom
-- kernel run as `units` dispatches (m, n and k are 0). Its inputs and assembled output live in
-- the blob store on disk (relay/src/blobs.rs). Demo jobs have no requester.
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('matmul', 'kernel')),
    m            INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    k            INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'done', 'failed', 'cancelled')),
    output_hash  TEXT,
    created_at   INTEGER NOT NULL,
    is_demo      INTEGER NOT NULL,
    requester_id INTEGER REFERENCES requesters(id),
    output_bytes INTEGER NOT NULL DEFAULT 0,
    -- Why a failed job failed, in words for its requester (jobs::fail).
    failure      TEXT,
    -- 1 while every unit is verified and the output is being assembled (relay/src/assembly.rs):
    -- the job stays 'queued' until its output is written, then becomes 'done'.
    assembling   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_requester ON jobs(requester_id, id) WHERE requester_id IS NOT NULL;
-- Jobs waiting for their output: what the assembler looks for after each wake and at start.
CREATE INDEX IF NOT EXISTS jobs_assembling ON jobs(id) WHERE assembling = 1;

-- One tile of a matmul job's C: rows row0..row0+m, columns col0..col0+n, the full k, from the
-- A row panel a_hash and the B column panel b_hash. Or one dispatch of a kernel job: row0 is its
-- index in the job and `kernel_unit` describes it (inputs, dispatch, output size, tolerance).
CREATE TABLE IF NOT EXISTS units (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       INTEGER NOT NULL REFERENCES jobs(id),
    row0         INTEGER NOT NULL,
    col0         INTEGER NOT NULL,
    m            INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    k            INTEGER NOT NULL,
    kernel_hash  TEXT NOT NULL,
    a_hash       TEXT,
    b_hash       TEXT,
    state        TEXT NOT NULL
                 CHECK (state IN ('pending', 'leased', 'verified', 'failed', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    result_hash  TEXT,
    -- How the output is verified (see relay/src/replication.rs): 'freivalds' checks each result
    -- on its own; 'replicate' compares results of distinct contributors until `quorum` of them
    -- agree and form a strict majority of the `replicas_needed` or more results gathered.
    verify          TEXT NOT NULL DEFAULT 'freivalds',
    quorum          INTEGER NOT NULL DEFAULT 1,
    replicas_needed INTEGER NOT NULL DEFAULT 1,
    -- 1 while one trusted contributor's result stands alone until a later check settles it.
    on_trust        INTEGER NOT NULL DEFAULT 0,
    -- A known-answer (canary) unit: the verified unit whose inputs and answer it repeats. Not
    -- part of its job's output or progress.
    canary_of       INTEGER REFERENCES units(id),
    -- With homogeneous redundancy: the adapter kind ("vendor/architecture") of its replicas.
    adapter_class   TEXT,
    -- Floating-point operations of a result: 2·m·n·k for a tile, the invocations of a dispatch.
    flop            INTEGER NOT NULL DEFAULT 0,
    -- What its job pays for each credited result, in credits (the token's smallest unit), as
    -- stated when the job was accepted (relay/src/work/pricing.rs).
    price           INTEGER NOT NULL DEFAULT 0 CHECK (price >= 0),
    -- A kernel job's unit, as JSON (relay/src/units.rs: KernelUnit); NULL for matmul tiles.
    kernel_unit     TEXT,
    -- GPU time its leases used, from issue to result or to a release that reported the GPU
    -- failing, and how many such releases there were: a kernel unit's time budget
    -- (leasing::charge_gpu_time).
    gpu_ms          INTEGER NOT NULL DEFAULT 0,
    gpu_failures    INTEGER NOT NULL DEFAULT 0,
    -- Leases of keys without a record that ended without a result (expired, rejected), and
    -- until when, after the last of them, only keys with a record may lease it (units.rs:
    -- requeue), so that strangers cannot take it again and again.
    misses          INTEGER NOT NULL DEFAULT 0,
    held_until_ms   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS units_by_state ON units(state, id);
-- Verified replicated units, newest last: where canaries are drawn from, without walking every
-- verified unit (nearly all of them Freivalds-checked).
CREATE INDEX IF NOT EXISTS units_canary_sources ON units(id)
    WHERE state = 'verified' AND verify = 'replicate' AND canary_of IS NULL;
-- A job's units by state: whether any is left is a few index probes, however big the job.
CREATE INDEX IF NOT EXISTS units_by_job_state ON units(job_id, state);
DROP INDEX IF EXISTS units_by_job;

-- A unit handed to one contributor until deadline_ms.
CREATE TABLE IF NOT EXISTS leases (
    lease_id     TEXT PRIMARY KEY,    -- issue time (48-bit ms) and 80 random bits, hex
    unit_id      INTEGER NOT NULL REFERENCES units(id),
    public_key   TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('active', 'submitted', 'expired', 'released', 'rejected')),
    -- Who held it, for keeping replicas of a unit apart: the linked address (if any), the
    -- client's /24 (IPv4) or /64 (IPv6) network, and the adapter kind.
    account       TEXT,
    network       TEXT,
    adapter_class TEXT,
    -- 1 when the relay stopped (crashed or was restarted) while this lease was active
    -- (leasing::mark_interrupted): the contributor may never have received it.
    outlived_relay INTEGER NOT NULL DEFAULT 0,
    -- 1 when the unit was left to this lease's trusted contributor alone (replication.rs):
    -- trust belongs to this lease, and ends with it when it ends without a result.
    on_trust       INTEGER NOT NULL DEFAULT 0,
    -- 1 for a known-answer lease (canaries.rs): a lease of a unit already verified by
    -- independent contributors, judged against that answer; its unit's state is not touched.
    canary         INTEGER NOT NULL DEFAULT 0,
    -- Why it was released, when the contributor said (wire::ReleaseReason).
    release_reason TEXT,
    -- 1 when its key had a verified record (was trusted) when it was issued: only such a
    -- lease's failures count against its unit and job; an unproven key's count against the key,
    -- its address and its network (lease_caps.rs).
    proven         INTEGER NOT NULL DEFAULT 0,
    -- What the per-network lease caps count it against: the client's network, or on a
    -- loopback-only relay its loopback address (network.rs).
    source         TEXT
);
CREATE INDEX IF NOT EXISTS leases_by_state ON leases(state, deadline_ms);
CREATE INDEX IF NOT EXISTS leases_by_unit ON leases(unit_id);
-- Leases in flight per key, per linked address and per source, and the unproven leases of a
-- source in flight and lately failed (lease_caps.rs: each count stops at the cap, so a few
-- index entries are read whatever the traffic).
CREATE INDEX IF NOT EXISTS leases_active_by_key ON leases(public_key, deadline_ms)
    WHERE state = 'active';
CREATE INDEX IF NOT EXISTS leases_active_by_account ON leases(account, deadline_ms)
    WHERE state = 'active' AND account IS NOT NULL;
CREATE INDEX IF NOT EXISTS leases_in_flight_by_source ON leases(source, proven, deadline_ms)
    WHERE state = 'active' AND source IS NOT NULL;
-- Whether keys with a record are at work lately (units.rs: first pick).
CREATE INDEX IF NOT EXISTS leases_proven_recent ON leases(issued_at_ms) WHERE proven = 1;
CREATE INDEX IF NOT EXISTS leases_unproven_failed ON leases(source, deadline_ms)
    WHERE state IN ('expired', 'rejected') AND proven = 0 AND source IS NOT NULL;

-- Every signed submission that reached verification. state: 'valid' (credited), 'invalid',
-- 'pending' (a replica waiting for the others, or a trusted result waiting to be settled; its
-- output blob is stored), 'withheld' (its contributor was quarantined first) or 'cancelled'
-- (pending when its job was cancelled). verified = 1
-- exactly when state is 'valid'.
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id     INTEGER NOT NULL REFERENCES units(id),
    lease_id    TEXT NOT NULL UNIQUE REFERENCES leases(lease_id),
    public_key  TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    verified    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'valid'
);
CREATE INDEX IF NOT EXISTS results_by_key ON results(public_key);
CREATE INDEX IF NOT EXISTS results_by_unit ON results(unit_id);
CREATE INDEX IF NOT EXISTS results_pending ON results(public_key, created_at) WHERE state = 'pending';

-- What the verifier knows of each session key and each linked address (see
-- relay/src/reputation.rs).
CREATE TABLE IF NOT EXISTS reputation (
    subject           TEXT PRIMARY KEY,  -- a session key (hex) or an address (0x...)
    results_valid     INTEGER NOT NULL DEFAULT 0,
    results_invalid   INTEGER NOT NULL DEFAULT 0,
    consecutive_valid INTEGER NOT NULL DEFAULT 0,
    strikes           INTEGER NOT NULL DEFAULT 0,
    quarantined_at_ms INTEGER
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS contributors (
    public_key    TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);

-- The double-entry ledger (relay/src/accounts/ledger.rs): append-only legs; a balance is the
-- sum of an account's amounts. Every entry's legs sum to zero, so the sum over all accounts is
-- zero: money only moves, from a source (a grant, a deposit) through a requester's budget and
-- a job's escrow to the contributors, partners and operator who earned it.
CREATE TABLE IF NOT EXISTS ledger_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    memo          TEXT  -- who granted it and why, a deposit's transaction, ...
);
CREATE TABLE IF NOT EXISTS ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account       TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    unit_id       INTEGER REFERENCES units(id),
    result_id     INTEGER REFERENCES results(id),
    created_at_ms INTEGER NOT NULL,
    link_key      TEXT REFERENCES links(public_key),  -- the link that moved these credits
    entry         INTEGER REFERENCES ledger_entries(id),  -- NULL only for single-entry rows
                                                          -- of old databases (see migrations.rs)
    job_id        INTEGER REFERENCES jobs(id),         -- the job a reserve or release is for
    UNIQUE (result_id, kind)
);
-- A job's price is reserved once and what is left released once.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_job_once ON ledger(job_id, kind) WHERE job_id IS NOT NULL;
-- How many results of a unit its job has paid for (ledger::pay_result caps them).
CREATE INDEX IF NOT EXISTS ledger_paid_by_unit ON ledger(unit_id) WHERE kind = 'unit_paid';
-- The entries of Ethereum-address accounts, for GET /v1/accounts/{address}; queries must repeat
-- the condition to use it. A session key's balance is in `balances`, so the rows credited to
-- keys (nearly all of them) need no index.
CREATE INDEX IF NOT EXISTS ledger_by_address ON ledger(account) WHERE substr(account, 1, 2) = '0x';
DROP INDEX IF EXISTS ledger_by_account;
-- A link moves credits once: one link_out and one link_in row at most.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_link_once ON ledger(link_key, kind);

-- Each account's balance, the sum of its ledger rows, kept by the trigger below in the same
-- statement that appends the row, so it can never disagree with the ledger. The ledger stays the
-- record; this only saves summing it.
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    amount  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS ledger_keeps_balances
AFTER INSERT ON ledger
BEGIN
    INSERT INTO balances (account, amount) VALUES (new.account, new.amount)
    ON CONFLICT (account) DO UPDATE SET amount = amount + excluded.amount;
END;

CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_update
BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_delete
BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- Single-use nonces for Sign-In with Ethereum messages. A nonce is used (used_at_ms set) only by
-- the link it names; expired ones are deleted.
CREATE TABLE IF NOT EXISTS nonces (
    nonce         TEXT PRIMARY KEY,
    issued_at_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER,
    -- Who asked for it: an IPv4 address or an IPv6 /64 (crate::nonces); its index is made by
    -- db.rs, after the column is added to older databases.
    requester     TEXT
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces(expires_at_ms);

-- A session key linked to an Ethereum address, with the evidence: the EIP-4361 message, the
-- wallet's signature of it and the session key's. A key links once; links are never changed.
CREATE TABLE IF NOT EXISTS links (
    public_key        TEXT PRIMARY KEY,  -- lowercase hex
    address           TEXT NOT NULL,     -- EIP-55 checksummed
    chain_id          INTEGER NOT NULL,
    linked_at_ms      INTEGER NOT NULL,
    siwe_message      TEXT NOT NULL,
    wallet_signature  TEXT NOT NULL,
    session_signature TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS links_by_address ON links(address);

CREATE TRIGGER IF NOT EXISTS links_are_append_only_update
BEFORE UPDATE ON links
BEGIN
    SELECT RAISE(ABORT, 'links are append-only');
END;

CREATE TRIGGER IF NOT EXISTS links_are_append_only_delete
BEFORE DELETE ON links
BEGIN
    SELECT RAISE(ABORT, 'links are append-only');
END;

-- The partner widget a lease was computed through (crate::partners): the partner's address
-- (EIP-55), the embedding site's origin, and the share rate in basis points when it was issued.
-- Only leases from a widget have a row. The ledger's `origin` column (added by db.rs) records
-- the origin of each partner_share entry.
CREATE TABLE IF NOT EXISTS lease_partners (
    lease_id  TEXT PRIMARY KEY REFERENCES leases(lease_id),
    partner   TEXT NOT NULL,
    origin    TEXT NOT NULL,
    share_bps INTEGER NOT NULL CHECK (share_bps BETWEEN 0 AND 10000)
) WITHOUT ROWID;

-- Partners registered by the operator (`glowworm-relay partners add`, crate::partners): only
-- they are paid a share, only for leases naming one of their addresses and one of their sites,
-- and never for work credited to any of their addresses. Revoked partners keep their rows, so
-- their addresses stay theirs.
CREATE TABLE IF NOT EXISTS partners (
    id               INTEGER PRIMARY KEY,
    name             TEXT,
    registered_at_ms INTEGER NOT NULL,
    revoked_at_ms    INTEGER
);
CREATE TABLE IF NOT EXISTS partner_addresses (
    address    TEXT PRIMARY KEY,  -- EIP-55; an address belongs to one partner
    partner_id INTEGER NOT NULL REFERENCES partners(id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS partner_addresses_by_partner ON partner_addresses(partner_id);
CREATE TABLE IF NOT EXISTS partner_origins (
    partner_id INTEGER NOT NULL REFERENCES partners(id),
    origin     TEXT NOT NULL,     -- canonical, as crate::partners::canonical_origin writes it
    PRIMARY KEY (partner_id, origin)
) WITHOUT ROWID;

-- Epochs (relay/src/accounts/epochs.rs): each closes the ledger at a position and states every
-- address's lifetime earnings up to it as a Merkle tree (the JSON in the blob store, tree_hash).
-- Numbered 1, 2, ... without gaps; never changed except to record the root's publication.
CREATE TABLE IF NOT EXISTS epochs (
    epoch           INTEGER PRIMARY KEY CHECK (epoch >= 1),
    ledger_position INTEGER NOT NULL,
    root            TEXT NOT NULL,
    total           INTEGER NOT NULL CHECK (total >= 0),
    leaves          INTEGER NOT NULL,
    tree_hash       TEXT NOT NULL,
    closed_at_ms    INTEGER NOT NULL,
    publish_tx      TEXT,
    published_at_ms INTEGER
);

CREATE TRIGGER IF NOT EXISTS epochs_are_append_only_update
BEFORE UPDATE ON epochs
WHEN old.epoch IS NOT new.epoch OR old.ledger_position IS NOT new.ledger_position
  OR old.root IS NOT new.root OR old.total IS NOT new.total OR old.leaves IS NOT new.leaves
  OR old.tree_hash IS NOT new.tree_hash OR old.closed_at_ms IS NOT new.closed_at_ms
  OR (old.publish_tx IS NOT NULL AND old.publish_tx IS NOT new.publish_tx)
BEGIN
    SELECT RAISE(ABORT, 'epochs are append-only');
END;

CREATE TRIGGER IF NOT EXISTS epochs_are_append_only_delete
BEFORE DELETE ON epochs
BEGIN
    SELECT RAISE(ABORT, 'epochs are append-only');
END;

-- Requesters' deposits to the payout contract (relay/src/accounts/payout_chain.rs), each
-- credited once: (tx_hash, log_index) names the Deposited event.
CREATE TABLE IF NOT EXISTS deposits (
    tx_hash       TEXT NOT NULL,
    log_index     INTEGER NOT NULL,
    block_number  INTEGER NOT NULL,
    depositor     TEXT NOT NULL,           -- the wallet the tokens came from
    requester_ref TEXT NOT NULL,           -- the deposit's bytes32 requester reference
    requester_id  INTEGER REFERENCES requesters(id),  -- NULL: a reference no requester has
    token_units   TEXT NOT NULL,           -- decimal
    credits       INTEGER NOT NULL CHECK (credits >= 0),
    credited_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
) WITHOUT ROWID;

-- Where the next scan for deposits starts: every block before it has been scanned.
CREATE TABLE IF NOT EXISTS chain_cursor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    next_block INTEGER NOT NULL
);
