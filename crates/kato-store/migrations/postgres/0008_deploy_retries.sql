-- Retrying failed deploys, on PostgreSQL. Keep in step with ../sqlite/0008_deploy_retries.sql.

-- attempts: how many deploys of the recorded hash failed in a row (0 once one succeeds, and on
-- every user change). next_try_at: when the next retry is due, as the store writes timestamps;
-- NULL when none is. A replica claims a retry by moving next_try_at forward (compare-and-set on
-- the value it read), so only one replica retries a component at a time.
ALTER TABLE deployments ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN next_try_at TEXT;
