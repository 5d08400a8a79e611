//! A scratch PostgreSQL database for `compare --postgres` and `registry-bench --postgres`:
//! created for the run, dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use osb_routing::store::PostgresStore;

use crate::Result;

/// `osb_compare_<random>` on the server of the URL given.
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

/// A connection to `url`, its connection task on the current runtime.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| "--postgres is not a PostgreSQL URL")?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl ScratchDatabase {
    /// Creates the database on `server` (whose user may create databases).
    pub async fn create(server: &str) -> Result<ScratchDatabase> {
        let name = format!("osb_compare_{}", uuid::Uuid::new_v4().simple());
        connect(server)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(&format!("/{name}"));
        Ok(ScratchDatabase {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store on this database, as the gateway opens it.
    pub async fn open_store(&self) -> Result<Arc<PostgresStore>> {
        Ok(Arc::new(PostgresStore::open(&self.url).await?))
    }

    /// Drops the database (the gateways using it must have stopped).
    pub async fn drop_database(&self) -> Result<()> {
        connect(&self.server)
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}
