-- 0002: the durable audit trail (host/audit). One row per record of a node's
-- hash chain. body is the record's exact encoding, the bytes its hash and its
-- successor's prev cover: text, not jsonb, which would reorder keys and
-- normalize numbers and whitespace and so break every hash. The other
-- columns repeat what body says, as an index for queries and retention;
-- audit verify compares them with body.
CREATE TABLE authority_audit (
    node        text        NOT NULL CHECK (node <> ''),
    seq         bigint      NOT NULL CHECK (seq > 0),
    hash        text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'), -- hex SHA-256 of body
    source      text        NOT NULL DEFAULT '',
    event_type  text        NOT NULL,
    tenant      text        NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    body        text        NOT NULL,
    PRIMARY KEY (node, seq)
);

-- A tenant's records over time. (No index on occurred_at alone: retention
-- uses the checkpoint index below, and every index is paid for on each of
-- the table's inserts, the hot path of the audit budget.)
CREATE INDEX authority_audit_tenant_occurred_at_idx ON authority_audit (tenant, occurred_at);
-- Purge looks for each node's latest checkpoint before the cutoff: a few
-- rows per node and hour (fewer once purged), read from this index alone
-- instead of from every record before the cutoff.
CREATE INDEX authority_audit_checkpoint_idx ON authority_audit (occurred_at) INCLUDE (node, seq)
    WHERE event_type = 'authority.audit.checkpoint';
