-- Lifted decisions are looked up by when they were lifted (the enforcer polls for them).
CREATE INDEX decisions_deleted ON decisions (deleted_ms);
