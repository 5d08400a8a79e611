-- Quota counts: a record lists the quota counts it is counted in (`record->'quotas'`, a JSON array
-- of keys); a count is the number of live (not orphaned) records listing its key. These indexes
-- answer one count without a scan. Creating a record within its quotas takes a transaction-scoped
-- advisory lock per key first, so replicas count and insert one after the other.

CREATE INDEX osb_instances_quotas ON osb_instances USING gin ((record -> 'quotas') jsonb_path_ops)
    WHERE NOT orphaned;
CREATE INDEX osb_bindings_quotas ON osb_bindings USING gin ((record -> 'quotas') jsonb_path_ops)
    WHERE NOT orphaned;
