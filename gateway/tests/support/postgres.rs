//! PostgreSQL for tests: a fresh database on the machine's server (127.0.0.1:5432, trust auth; `.ci/run`
//! starts it), or a private server of the test's own (initdb in a temp folder, its own port) that
//! the test may stop and start at will.

use std::path::PathBuf;
use std::process::Command;

const SHARED: &str = "postgres://postgres@127.0.0.1:5432";

fn psql(database_url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([database_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A database of its own on the shared server, dropped at the end.
pub struct Database {
    pub url: String,
    name: String,
}

impl Database {
    pub fn create() -> Database {
        let name = format!("osb_gw_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("{SHARED}/test"), &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("cannot create a test database on {SHARED} (run .ci/run, which starts PostgreSQL): {e}")
        });
        Database {
            url: format!("{SHARED}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &format!("{SHARED}/test"),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn bin(name: &str) -> PathBuf {
    let root = std::path::Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e} (PostgreSQL server binaries are needed)", root.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.last().unwrap().join("bin").join(name)
}

/// A private PostgreSQL server (run as the `postgres` user: the server refuses root).
pub struct PrivateServer {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Serves TLS only (plain TCP connections are refused).
    tls: bool,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        Self::start_with(None)
    }

    /// A server that takes TLS connections only, with this certificate and key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> PrivateServer {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> PrivateServer {
        let dir = tempfile::Builder::new().prefix("osb-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some((cert, key)) = tls {
            std::fs::copy(cert, dir.path().join("server.crt")).unwrap();
            std::fs::copy(key, dir.path().join("server.key")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let output = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                bin("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
            ])
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if tls.is_some() {
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        let server = PrivateServer {
            dir,
            port,
            tls: tls.is_some(),
        };
        server.pg_ctl(&["start", "-w"]);
        psql(&format!("{}/postgres", server.base_url()), "CREATE DATABASE osb").unwrap();
        server
    }

    fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The gateway's database on this server.
    pub fn url(&self) -> String {
        format!("{}/osb", self.base_url())
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                file("server.crt"),
                file("server.key")
            ));
        }
        let output = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                bin("pg_ctl").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
            ])
            .args(["-l", log.to_str().unwrap(), "-o", &options, "-m", "fast"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w"]);
    }

    pub fn resume(&self) {
        self.pg_ctl(&["start", "-w"]);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                bin("pg_ctl").to_str().unwrap_or_default(),
                "-D",
            ])
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
