-- What each component should be doing on the server's target (deployed or stopped), and what
-- the last deploy applied: the hash of the objects it played and its error, if any.
-- No foreign key to components: when a component is deleted, the row tells the server to stop
-- what still runs, and the server deletes it then.
CREATE TABLE deployments (
    team          TEXT NOT NULL,
    component     TEXT NOT NULL,
    desired       TEXT NOT NULL CHECK (desired IN ('deployed', 'stopped')),
    applied_hash  TEXT,
    error         TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (team, component)
);
