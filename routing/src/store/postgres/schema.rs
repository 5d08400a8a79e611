//! The PostgreSQL store's schema: the embedded migrations (`sql::MIGRATIONS`) applied on open, in
//! one transaction under an advisory lock.

use tracing::{info, warn};

use super::sql::{CREATE_MIGRATIONS, MIGRATION_LOCK, MIGRATIONS};
use super::{Connections, MIGRATION_TIMEOUT};
use crate::RoutingError;

impl Connections {
    /// Creates or updates the schema: the missing migrations, in order, in one transaction under
    /// an advisory lock (transaction-scoped, so it is released on commit or rollback, and even if
    /// this process dies). A replica that started at the same time waits for the lock, then finds
    /// the migrations applied.
    pub(super) async fn migrate(&self) -> Result<(), RoutingError> {
        let context = "migrate the schema";
        let mut client = self.client(context).await?;
        let answer = tokio::time::timeout(MIGRATION_TIMEOUT, async {
            let txn = client.transaction().await?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            txn.batch_execute(CREATE_MIGRATIONS).await?;
            let applied: Vec<i64> = txn
                .query("SELECT version FROM osb_schema_migrations", &[])
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            let mut newly = Vec::new();
            for (version, sql) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                txn.batch_execute(sql).await?;
                txn.execute(
                    "INSERT INTO osb_schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
                newly.push(*version);
            }
            txn.commit().await?;
            Ok((applied, newly))
        })
        .await;
        let (applied, newly) = self.settle(context, client, answer, MIGRATION_TIMEOUT)?;
        if !newly.is_empty() {
            info!(server = %self.server, versions = ?newly, "Store schema migrated.");
        }
        let known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
        if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
            warn!(
                server = %self.server,
                schema = newer,
                known,
                "Store schema is newer than this build knows; running on it anyway."
            );
        }
        Ok(())
    }
}
