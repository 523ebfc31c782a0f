-- Secrets sealed at rest on PostgreSQL. Keep in step with ../sqlite/0006_sealed_secrets.sql.

-- The key the database's secrets are sealed with (by its id; the key itself is never stored
-- here). One row, written at the first start of a version that seals, changed by a rotation.
CREATE TABLE secret_key (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    key_id     TEXT NOT NULL,
    sealed_at  TEXT NOT NULL
);

-- sealed_with: the key id each row was sealed with; NULL for a row still in clear, which the
-- server seals at start (rows written before this migration). Sealed values are
-- 'sealed:v1:{key id}:{base64}', and '' where nothing is set.
-- credentials: password, ssh_key and known_hosts hold sealed values.
ALTER TABLE credentials ADD COLUMN sealed_with TEXT;
-- installations: doc is stored without its values; they are sealed in sealed_values.
ALTER TABLE installations ADD COLUMN sealed_values TEXT NOT NULL DEFAULT '';
ALTER TABLE installations ADD COLUMN sealed_with TEXT;
-- plugins and versions: spec is stored without the default of its secret items; those are
-- sealed in sealed_defaults.
ALTER TABLE plugins ADD COLUMN sealed_defaults TEXT NOT NULL DEFAULT '';
ALTER TABLE plugins ADD COLUMN sealed_with TEXT;
ALTER TABLE versions ADD COLUMN sealed_defaults TEXT NOT NULL DEFAULT '';
ALTER TABLE versions ADD COLUMN sealed_with TEXT;
