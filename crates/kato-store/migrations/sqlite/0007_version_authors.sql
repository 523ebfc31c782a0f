-- Who created each version, on SQLite. Keep in step with ../postgres/0007_version_authors.sql.

-- created_by: `admin` for the admin token, `token <name>` for a team token, as the API
-- answers it. NULL for versions created before it was recorded: shown as unknown.
ALTER TABLE versions ADD COLUMN created_by TEXT;
