-- Discovery (DESIGN §6) on SQLite. Keep in step with ../postgres/0004_discovery.sql.

-- Discovery tokens are no longer kept in clear. A token is derived from the server's discovery
-- key and a per-installation nonce; only the nonce and the token's SHA-256 hash are stored.
-- The clear tokens of existing rows become their nonces; the server fills in the hashes at start.
ALTER TABLE installations RENAME COLUMN discovery_token TO discovery_nonce;
ALTER TABLE installations ADD COLUMN discovery_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX installations_by_discovery_hash ON installations (discovery_hash);

-- The highest revision each (team, component, plug-in) ever served: kept across uninstall and
-- reinstall, so a plug-in never sees its revision go back.
CREATE TABLE discovery_revisions (
    team       TEXT NOT NULL,
    component  TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    PRIMARY KEY (team, component, plugin)
);
INSERT INTO discovery_revisions (team, component, plugin, revision)
    SELECT team, component, plugin, CAST(json_extract(doc, '$.revision') AS INTEGER) FROM installations;

-- What each pod of a plug-in reported applying or rejecting. Uninstalling drops them.
CREATE TABLE discovery_acks (
    team       TEXT NOT NULL,
    component  TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    pod        TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    message    TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (team, component, plugin, pod, revision),
    FOREIGN KEY (team, component, plugin) REFERENCES installations (team, component, plugin) ON DELETE CASCADE
);
