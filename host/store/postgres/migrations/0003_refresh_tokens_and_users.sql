-- 0003: refresh-token rotation and password users.
--
-- A refresh token that was used is 'rotated' (revoked_at holds when), so a
-- second use is recognised as reuse; auth_time is when the grant's subject
-- authenticated, from which a refresh family's absolute lifetime counts.
ALTER TABLE authority_tokens ADD COLUMN auth_time timestamptz;
ALTER TABLE authority_tokens DROP CONSTRAINT authority_tokens_status_check;
ALTER TABLE authority_tokens ADD CONSTRAINT authority_tokens_status_check
    CHECK (status IN ('active', 'revoked', 'rotated'));
ALTER TABLE authority_tokens DROP CONSTRAINT authority_tokens_revoked_at_matches_status;
ALTER TABLE authority_tokens ADD CONSTRAINT authority_tokens_revoked_at_matches_status
    CHECK ((status <> 'active') = (revoked_at IS NOT NULL));

-- Resource owners of the password grant, per tenant. password_hash is an
-- Argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash): never
-- a clear or fast-hashed password.
CREATE TABLE authority_users (
    tenant        text        NOT NULL CHECK (octet_length(tenant) BETWEEN 1 AND 128),
    username      text        NOT NULL CHECK (octet_length(username) BETWEEN 1 AND 256), -- also the tokens' sub
    password_hash text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    scopes        text[],     -- NULL: every scope of the client; else the user's limit
    disabled      boolean     NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, username)
);
