-- One row per analysed request (ARCHITECTURE §7). The same columns as the PostgreSQL schema.
CREATE TABLE analyzed_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ip_address    TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    user_agent    TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    threat_type   TEXT    NOT NULL,
    confidence    INTEGER NOT NULL,
    reasoning     TEXT    NOT NULL,
    decided_by    TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,  -- when logsec decided, RFC 3339 UTC
    logged_at     TEXT,              -- the request's own time from the log, RFC 3339 UTC
    score         INTEGER NOT NULL,
    rules         TEXT    NOT NULL,  -- JSON array of rule ids
    source_file   TEXT    NOT NULL,  -- fingerprint of the log file
    source_offset INTEGER NOT NULL,  -- offset just past the line in that file
    UNIQUE (source_file, source_offset)
);
CREATE INDEX analyzed_requests_ip ON analyzed_requests (ip_address, created_at);
