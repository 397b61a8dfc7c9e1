-- 0001: the token table. One row per issued access or refresh token; the
-- source of truth for introspection and revocation.
CREATE TABLE authority_tokens (
    id                 text        PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 128),
    kind               text        NOT NULL CHECK (kind IN ('access_token', 'refresh_token')),
    tenant             text        NOT NULL DEFAULT '',
    client_id          text        NOT NULL DEFAULT '',
    subject            text        NOT NULL DEFAULT '',
    scopes             text[]      NOT NULL DEFAULT '{}',
    audiences          text[]      NOT NULL DEFAULT '{}',
    issued_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    status             text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at         timestamptz,
    sender_constraint  text        NOT NULL DEFAULT 'none'
                                   CHECK (sender_constraint IN ('none', 'dpop', 'mtls', 'dpop+mtls')),
    key_thumbprint     text,       -- DPoP cnf.jkt, NULL if none
    sender_certificate text,       -- mTLS cnf x5t#S256, NULL if none (rollout plan: authority_tokens.senderCertificate)
    parent_id          text,       -- refresh-token lineage, NULL if none
    CONSTRAINT authority_tokens_revoked_at_matches_status
        CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

CREATE INDEX authority_tokens_expires_at_idx ON authority_tokens (expires_at);
CREATE INDEX authority_tokens_parent_id_idx ON authority_tokens (parent_id) WHERE parent_id IS NOT NULL;
