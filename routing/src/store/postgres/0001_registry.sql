-- The ownership registry, the last good catalogs and the replicas' heartbeats.
--
-- Records are the registry's JSON (`record`) beside the columns the store queries: `version` for
-- compare-and-swap, `orphaned`/`pending` for the two indexes (kept in the same statement as the
-- record), and the claim of an orphan by one replica (`claimed_by` until `claimed_until`, in ms
-- since the Unix epoch; 0 = never claimed). Ids sort bytewise (COLLATE "C"), as in the embedded
-- store.

CREATE TABLE osb_instances (
    id            text COLLATE "C" PRIMARY KEY,
    record        jsonb   NOT NULL,
    version       bigint  NOT NULL,
    orphaned      boolean NOT NULL DEFAULT false,
    pending       boolean NOT NULL DEFAULT false,
    claimed_until bigint  NOT NULL DEFAULT 0,
    claimed_by    text
);
CREATE INDEX osb_instances_orphaned ON osb_instances (claimed_until, id) WHERE orphaned;
CREATE INDEX osb_instances_pending ON osb_instances (id) WHERE pending;

-- No foreign key to osb_instances: as in the embedded store, deleting an instance deletes the
-- bindings it has at that moment (in the same statement), and nothing more is promised.
CREATE TABLE osb_bindings (
    id            text COLLATE "C" PRIMARY KEY,
    instance_id   text COLLATE "C" NOT NULL,
    record        jsonb   NOT NULL,
    version       bigint  NOT NULL,
    orphaned      boolean NOT NULL DEFAULT false,
    pending       boolean NOT NULL DEFAULT false,
    claimed_until bigint  NOT NULL DEFAULT 0,
    claimed_by    text
);
CREATE INDEX osb_bindings_instance ON osb_bindings (instance_id);
CREATE INDEX osb_bindings_orphaned ON osb_bindings (claimed_until, id) WHERE orphaned;
CREATE INDEX osb_bindings_pending ON osb_bindings (id) WHERE pending;

CREATE TABLE osb_catalogs (
    broker        text PRIMARY KEY,
    body          bytea  NOT NULL,
    etag          text,
    last_modified text,
    fetched_at_ms bigint NOT NULL
);

CREATE TABLE osb_replicas (
    id           text PRIMARY KEY,
    last_seen_ms bigint NOT NULL
);
