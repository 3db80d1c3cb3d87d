-- Run at every start of the warehouse server (docker/postgres/entrypoint.sh): keep it re-runnable.
-- The schema Snowplow's layout lands in (atomic.events and the entity tables), as its loader's.
CREATE SCHEMA IF NOT EXISTS atomic;
