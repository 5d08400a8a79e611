-- The audit log: one row per mutating platform call and per operator action, numbered by `seq`
-- (increasing; read newest first). `record` is the audit record's JSON; the columns beside it are
-- what queries filter on. Nothing in it is secret (see routing/src/audit.rs).

CREATE TABLE osb_audit (
    seq         bigserial PRIMARY KEY,
    at_ms       bigint NOT NULL,
    kind        text   NOT NULL,
    actor       text   NOT NULL,
    operation   text   NOT NULL,
    outcome     text   NOT NULL,
    instance_id text COLLATE "C",
    binding_id  text COLLATE "C",
    record      jsonb  NOT NULL
);
CREATE INDEX osb_audit_instance ON osb_audit (instance_id, seq) WHERE instance_id IS NOT NULL;
CREATE INDEX osb_audit_binding ON osb_audit (binding_id, seq) WHERE binding_id IS NOT NULL;
