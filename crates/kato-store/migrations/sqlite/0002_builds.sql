-- Builds: where a version came from, which server is building it, and its log.
-- Keep in step with ../postgres/0002_builds.sql.

-- JSON: repo, commit, Dockerfile path, base image and its digest, pushed digest.
ALTER TABLE versions ADD COLUMN provenance TEXT;
-- The server building the version, and until when its claim holds unless renewed: a server
-- that dies mid-build lets the lease run out, and another one fails the build.
ALTER TABLE versions ADD COLUMN lease_owner TEXT;
ALTER TABLE versions ADD COLUMN lease_until TEXT;

-- Every line git and the builder printed, in order, with when it was printed.
CREATE TABLE build_logs (
    team    TEXT NOT NULL,
    plugin  TEXT NOT NULL,
    number  INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    at      TEXT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (team, plugin, number, seq),
    FOREIGN KEY (team, plugin, number) REFERENCES versions (team, plugin, number) ON DELETE CASCADE
);

-- Credentials a team gives for its private registries and git hosts. The password is only read
-- by builds and never answered by the API.
CREATE TABLE credentials (
    team        TEXT NOT NULL REFERENCES teams (name),
    host        TEXT NOT NULL,
    username    TEXT NOT NULL,
    password    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (team, host)
);
