-- Ban decisions: what logsec (or an operator, or another agent of the fleet) decided to block,
-- until when. The firewall backends, `logsec decisions` and the decisions API read them.
CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid       TEXT    NOT NULL UNIQUE,  -- the same on every agent of a fleet
    value      TEXT    NOT NULL,         -- an address, or a block (203.0.113.0/24)
    origin     TEXT    NOT NULL,         -- logsec | manual | fleet
    host       TEXT    NOT NULL,         -- the agent that decided it
    reason     TEXT    NOT NULL,         -- threat type, or the operator's reason
    offence    BIGINT  NOT NULL,         -- 1 for the first ban of this value, 2 for the next, ...
    created_ms BIGINT  NOT NULL,         -- Unix ms
    until_ms   BIGINT  NOT NULL,         -- Unix ms
    deleted_ms BIGINT                    -- set when an operator lifted it
);
CREATE INDEX decisions_until ON decisions (until_ms);
CREATE INDEX decisions_value ON decisions (value);
