-- SSH credentials on PostgreSQL. Keep in step with ../sqlite/0005_ssh_credentials.sql.

-- A team's credential for a git host may hold an SSH private key and the host's known_hosts
-- line(s): ssh repos are cloned with them only, never with the server's own keys. Like the
-- password, neither is ever answered by the API ('' when not set).
ALTER TABLE credentials ADD COLUMN ssh_key TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN known_hosts TEXT NOT NULL DEFAULT '';
