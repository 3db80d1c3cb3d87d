-- The automated fulfilment centre's operational database: what its robots, conveyor segments,
-- totes and picks write, and what Debezium's PostgreSQL source streams into Kafka
-- (connectors/configs/local/fulfilment-source.json). The fulfilment-db server runs it at every
-- start (docker/postgres/entrypoint.sh), so every statement is written to be run again.
--
-- Every table has REPLICA IDENTITY FULL: an update or delete in the WAL then carries the whole old
-- row, not only its key, so the change events' "before" holds the unchanged columns too.
-- Every row has a version that each update raises by one: the tests check, per row, that the
-- change table holds versions 1..n once each (nothing lost, nothing twice).
CREATE SCHEMA IF NOT EXISTS fulfilment;

CREATE TABLE IF NOT EXISTS fulfilment.robots (
    robot_id     text PRIMARY KEY,                  -- 'AMR-0042': the fleet's asset tag
    model        text NOT NULL,
    zone         text NOT NULL,
    state        text NOT NULL CHECK (state IN ('idle', 'picking', 'charging', 'fault')),
    battery_pct  smallint NOT NULL CHECK (battery_pct BETWEEN 0 AND 100),
    position_x   numeric(7, 2) NOT NULL,
    position_y   numeric(7, 2) NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fulfilment.conveyor_segments (
    segment_id   text PRIMARY KEY,                  -- 'A-03': aisle and segment
    zone         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('running', 'stopped', 'jammed')),
    speed_mps    numeric(4, 2) NOT NULL,
    totes_on     integer NOT NULL DEFAULT 0,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fulfilment.totes (
    tote_id      uuid PRIMARY KEY,
    barcode      text NOT NULL UNIQUE,
    segment_id   text REFERENCES fulfilment.conveyor_segments (segment_id),
    status       text NOT NULL CHECK (status IN ('empty', 'filling', 'full', 'shipped')),
    item_count   integer NOT NULL DEFAULT 0,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- An order line picked into a tote: a composite key, as order systems have.
CREATE TABLE IF NOT EXISTS fulfilment.picks (
    order_id     bigint NOT NULL,
    line_no      smallint NOT NULL,
    sku          text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    robot_id     text REFERENCES fulfilment.robots (robot_id),
    tote_id      uuid,
    status       text NOT NULL CHECK (status IN ('queued', 'picked', 'packed')),
    picked_at    timestamptz,
    version      integer NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_no)
);

-- Written by the source connector's heartbeat.action.query only. Its changes reach the connector,
-- which then confirms its position to the replication slot, so WAL written by tables it does not
-- capture (scratch below, other databases) is released while the captured tables are quiet.
CREATE TABLE IF NOT EXISTS fulfilment.cdc_heartbeat (
    id           smallint PRIMARY KEY,
    beat_at      timestamptz NOT NULL
);

-- Not captured: a table busy apps write to (and the WAL test fills).
CREATE TABLE IF NOT EXISTS fulfilment.scratch (
    id           bigserial PRIMARY KEY,
    filler       text NOT NULL
);

ALTER TABLE fulfilment.robots REPLICA IDENTITY FULL;
ALTER TABLE fulfilment.conveyor_segments REPLICA IDENTITY FULL;
ALTER TABLE fulfilment.totes REPLICA IDENTITY FULL;
ALTER TABLE fulfilment.picks REPLICA IDENTITY FULL;
