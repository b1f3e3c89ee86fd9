-- The analysts' tool calls and results (JSON array; empty when no tool was called).
ALTER TABLE analyzed_requests ADD COLUMN tool_results TEXT NOT NULL DEFAULT '';
