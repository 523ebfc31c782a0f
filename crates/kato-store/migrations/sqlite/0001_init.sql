-- Kato's schema on SQLite. The model lives as JSON documents in TEXT columns; the key columns
-- beside them carry the identities, order and references the database enforces.
-- Keep in step with ../postgres/0001_init.sql: the same tables, columns and constraints.
-- Only TEXT and INTEGER column types: sqlx's Any driver refuses other declared SQLite types.

CREATE TABLE teams (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

-- AUTOINCREMENT: the id of a revoked token is never handed out again.
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    team        TEXT REFERENCES teams (name),  -- NULL: an admin token
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE INDEX tokens_by_team ON tokens (team);

CREATE TABLE plugins (
    team          TEXT NOT NULL REFERENCES teams (name),
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    -- The highest version number ever cut: numbers are never reused, even after a delete.
    last_version  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (team, name)
);

CREATE TABLE versions (
    team         TEXT NOT NULL,
    plugin       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    status       TEXT NOT NULL,
    spec         TEXT NOT NULL,
    image        TEXT,
    error        TEXT,
    created_at   TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (team, plugin, number),
    FOREIGN KEY (team, plugin) REFERENCES plugins (team, name) ON DELETE CASCADE
);
-- Finding builds to run or to fail after a restart must not scan every version ever built.
CREATE INDEX versions_unfinished ON versions (status, created_at) WHERE status IN ('queued', 'building');

CREATE TABLE components (
    team          TEXT NOT NULL REFERENCES teams (name),
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    -- Hands out installation `seq` numbers, which keep the install order.
    last_install  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (team, name)
);

-- The depends_on lists, as rows: "who depends on X" is an indexed lookup, and a component
-- others depend on cannot be deleted.
CREATE TABLE component_deps (
    team        TEXT NOT NULL,
    component   TEXT NOT NULL,
    depends_on  TEXT NOT NULL,
    PRIMARY KEY (team, component, depends_on),
    FOREIGN KEY (team, component) REFERENCES components (team, name) ON DELETE CASCADE,
    FOREIGN KEY (team, depends_on) REFERENCES components (team, name)
);
CREATE INDEX component_deps_by_target ON component_deps (team, depends_on);

CREATE TABLE installations (
    team             TEXT NOT NULL,
    component        TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    version          INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    doc              TEXT NOT NULL,
    discovery_token  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (team, component, plugin),
    FOREIGN KEY (team, component) REFERENCES components (team, name) ON DELETE CASCADE,
    -- A version in use cannot be deleted.
    FOREIGN KEY (team, plugin, version) REFERENCES versions (team, plugin, number) ON DELETE RESTRICT
);
CREATE INDEX installations_by_plugin ON installations (team, plugin, version);
