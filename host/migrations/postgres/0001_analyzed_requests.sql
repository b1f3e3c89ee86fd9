-- One row per analysed request (ARCHITECTURE §7). The same columns as the SQLite schema.
CREATE TABLE analyzed_requests (
    id            BIGSERIAL PRIMARY KEY,
    ip_address    TEXT        NOT NULL,
    method        TEXT        NOT NULL,
    url           TEXT        NOT NULL,
    user_agent    TEXT        NOT NULL,
    status        INTEGER     NOT NULL,
    threat_type   TEXT        NOT NULL,
    confidence    INTEGER     NOT NULL,
    reasoning     TEXT        NOT NULL,
    decided_by    TEXT        NOT NULL,
    action        TEXT        NOT NULL,
    source        TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    logged_at     TIMESTAMPTZ,
    score         INTEGER     NOT NULL,
    rules         TEXT        NOT NULL,
    source_file   TEXT        NOT NULL,
    source_offset BIGINT      NOT NULL,
    UNIQUE (source_file, source_offset)
);
CREATE INDEX analyzed_requests_ip ON analyzed_requests (ip_address, created_at);
