//! `osb-loadtests engines`: the storage engines the registry could stand on, compared on its own
//! write pattern, at the key-value level (no registry, no HTTP).
//!
//! Every engine gets the same work: `records` keys (16 bytes, as the store keeps UUIDs) each
//! written twice, as a call's intent and then its outcome (a record of the embedded store's size),
//! in group commits of `batch` writes, each commit durable (fsync) before the next starts. Then
//! the engine is closed and opened again (the recovery a restart pays) and read at random keys.
//!
//! - `redb`: one table, `Durability::Immediate`, the 8 MB page cache the store uses (what the
//!   embedded store does today).
//! - `fjall`: an LSM tree (one keyspace), each batch committed and its journal synced.
//! - `journal`: an append-only file (length-prefixed records, `fdatasync` per batch) and an
//!   in-memory index of where each key's last record is, rebuilt by reading the whole file on
//!   open: the ceiling of a journal + snapshot design before its snapshot (compaction) is built.
//!
//! Prints one JSON object per engine: writes per second, CPU µs per write (this process), bytes
//! on disk per record, reopen time, point-read p50/p99.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::Result;
use crate::driver::percentile;

/// `osb-loadtests engines`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnginesArgs {
    /// Where the engines' files go (a folder per engine, removed after).
    #[arg(long)]
    pub dir: PathBuf,
    /// Records, each written twice.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Writes per durable commit.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Bytes of each record (the embedded store's records are about 300).
    #[arg(long, default_value_t = 300)]
    pub value_bytes: usize,
    /// Engines, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["redb", "fjall", "journal"])]
    pub engines: Vec<String>,
}

/// What every engine does.
trait Engine {
    /// Writes the batch and makes it durable.
    fn commit(&mut self, batch: &[([u8; 16], Vec<u8>)]) -> Result<()>;
    fn get(&mut self, key: &[u8; 16]) -> Result<Option<Vec<u8>>>;
}

fn key(i: usize) -> [u8; 16] {
    let mut key = [0u8; 16];
    // Spread as random UUIDs are (the store's keys are v4 UUIDs).
    let mixed = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    key.copy_from_slice(&mixed.to_be_bytes());
    key
}

fn value(i: usize, outcome: bool, bytes: usize) -> Vec<u8> {
    // Record-like: mostly repeated text (ids, names), a few varying bytes.
    let text = format!("{i:016x}aws.sqs/standard loadtests kubernetes {outcome} ");
    text.bytes().cycle().take(bytes).collect()
}

struct Redb {
    db: redb::Database,
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");

impl Redb {
    fn open(path: &Path) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(8 << 20)
            .create(path.join("store.redb"))?;
        Ok(Redb { db })
    }
}

impl Engine for Redb {
    fn commit(&mut self, batch: &[([u8; 16], Vec<u8>)]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (key, value) in batch {
                table.insert(&key[..], &value[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8; 16]) -> Result<Option<Vec<u8>>> {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(&key[..])?.map(|v| v.value().to_vec()))
    }
}

struct Fjall {
    db: fjall::Database,
    records: fjall::Keyspace,
}

impl Fjall {
    fn open(path: &Path) -> Result<Self> {
        let db = fjall::Database::builder(path.join("fjall")).open()?;
        let records = db.keyspace("records", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, records })
    }
}

impl Engine for Fjall {
    fn commit(&mut self, batch: &[([u8; 16], Vec<u8>)]) -> Result<()> {
        let mut writes = self.db.batch();
        for (key, value) in batch {
            writes.insert(&self.records, &key[..], &value[..]);
        }
        writes.commit()?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }

    fn get(&mut self, key: &[u8; 16]) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(&key[..])?.map(|v| v.to_vec()))
    }
}

/// Append-only records `[key 16][len u32 LE][value]`; the index maps a key to its last value's
/// offset and length.
struct Journal {
    file: std::fs::File,
    end: u64,
    index: HashMap<[u8; 16], (u64, u32)>,
    buffer: Vec<u8>,
}

impl Journal {
    fn open(path: &Path) -> Result<Self> {
        let path = path.join("journal");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut index = HashMap::new();
        let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let mut end = 0u64;
        let mut head = [0u8; 20];
        let mut skip = Vec::new();
        while reader.read_exact(&mut head).is_ok() {
            let mut key = [0u8; 16];
            key.copy_from_slice(&head[..16]);
            let len = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
            skip.resize(len as usize, 0);
            if reader.read_exact(&mut skip).is_err() {
                break; // a torn last record: not acknowledged, dropped
            }
            index.insert(key, (end + 20, len));
            end += 20 + u64::from(len);
        }
        Ok(Journal {
            file,
            end,
            index,
            buffer: Vec::new(),
        })
    }
}

impl Engine for Journal {
    fn commit(&mut self, batch: &[([u8; 16], Vec<u8>)]) -> Result<()> {
        self.buffer.clear();
        let mut at = self.end;
        for (key, value) in batch {
            let len = u32::try_from(value.len())?;
            self.buffer.extend_from_slice(key);
            self.buffer.extend_from_slice(&len.to_le_bytes());
            self.buffer.extend_from_slice(value);
            self.index.insert(*key, (at + 20, len));
            at += 20 + u64::from(len);
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        self.end = at;
        Ok(())
    }

    fn get(&mut self, key: &[u8; 16]) -> Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt as _;
        let Some(&(offset, len)) = self.index.get(key) else {
            return Ok(None);
        };
        let mut value = vec![0u8; len as usize];
        self.file.read_exact_at(&mut value, offset)?;
        Ok(Some(value))
    }
}

fn open(engine: &str, path: &Path) -> Result<Box<dyn Engine>> {
    Ok(match engine {
        "redb" => Box::new(Redb::open(path)?),
        "fjall" => Box::new(Fjall::open(path)?),
        "journal" => Box::new(Journal::open(path)?),
        other => return Err(format!("unknown engine {other:?} (redb, fjall, journal)").into()),
    })
}

/// Bytes of the file at `path`, or of every file under the folder at `path`.
pub(crate) fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs every engine in turn and prints its figures.
pub fn run(args: &EnginesArgs) -> Result<()> {
    let records = args.records.max(1);
    for name in &args.engines {
        let path = args.dir.join(format!("engine-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        let mut engine = open(name, &path)?;
        let cpu_before = crate::procstat::cpu_seconds(std::process::id());
        let started = Instant::now();
        let mut batch = Vec::with_capacity(args.batch);
        // Intents of a window of calls, then their outcomes, as calls in flight interleave.
        let window = args.batch.max(1) * 4;
        for start in (0..records).step_by(window) {
            let end = (start + window).min(records);
            for outcome in [false, true] {
                for i in start..end {
                    batch.push((key(i), value(i, outcome, args.value_bytes)));
                    if batch.len() == args.batch.max(1) {
                        engine.commit(&batch)?;
                        batch.clear();
                    }
                }
            }
        }
        if !batch.is_empty() {
            engine.commit(&batch)?;
            batch.clear();
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = crate::procstat::cpu_seconds(std::process::id()) - cpu_before;
        let writes = (records * 2) as f64;
        drop(engine);
        let bytes = disk_bytes(&path);

        let reopened = Instant::now();
        let mut engine = open(name, &path)?;
        let first = engine.get(&key(records / 2))?;
        let reopen_s = reopened.elapsed().as_secs_f64();
        if first.is_none() {
            return Err(format!("{name}: a written record is missing after reopening").into());
        }
        let mut nanos = Vec::with_capacity(10_000);
        for n in 0..10_000usize {
            let i = n.wrapping_mul(7919) % records;
            let t = Instant::now();
            let found = engine.get(&key(i))?;
            nanos.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if found.as_deref() != Some(&value(i, true, args.value_bytes)[..]) {
                return Err(format!("{name}: record {i} reads back wrong").into());
            }
        }
        nanos.sort_unstable();
        drop(engine);
        println!(
            "{}",
            json!({
                "engine": name,
                "records": records,
                "batch": args.batch,
                "value_bytes": args.value_bytes,
                "writes_per_s": writes / wall,
                "cpu_us_per_write": cpu * 1e6 / writes,
                "disk_bytes_per_record": bytes as f64 / records as f64,
                "reopen_s": reopen_s,
                "read_p50_us": percentile(&nanos, 50.0) as f64 / 1000.0,
                "read_p99_us": percentile(&nanos, 99.0) as f64 / 1000.0,
            })
        );
        let _ = std::fs::remove_dir_all(&path);
    }
    Ok(())
}
