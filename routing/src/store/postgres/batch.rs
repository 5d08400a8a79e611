//! Group commit for the PostgreSQL store: the record writes and audit appends that arrive while
//! a transaction is in flight go together in the next one, in one round trip.
//!
//! Callers hand their write to a queue and wait for its answer. [`WRITERS`] tasks each take every
//! write waiting (at most [`MAX_BATCH`]) and send `BEGIN`, the writes and `COMMIT` at once, as
//! one pipeline on one connection: one round trip and one commit (one WAL flush) for the batch,
//! where each write used to be a transaction and a round trip of its own. A write is acknowledged
//! only once its batch's `COMMIT` is answered.
//!
//! The writes of one batch were all waiting at the same time, so any order of them is an order
//! they could have come in: a batch sends them sorted by table and id (writes to one id in the
//! order they came), so that batches lock rows in one order and never deadlock on each other's
//! records. Each keeps its own compare-and-swap, checked against the writes before it in the
//! batch. When the server refuses a statement (a record it cannot store, a deadlock
//! with another replica's batch), the whole transaction is rolled back and each write of it is
//! tried again alone, so one bad write never fails the others. When the connection fails or does
//! not answer, whether the batch committed is unknown: every write of it gets an error, as a single
//! statement whose answer is lost would.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use serde_json::value::RawValue;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::types::Json;

use super::sql::{APPEND_AUDIT, LOCK_COUNTS, Table};
use super::{CALL_TIMEOUT, CONNECT_TIMEOUT, Connections, Params, PgError, int};
use crate::RoutingError;
use crate::audit::AuditRecord;

/// Most writes in one transaction (an audit append counts each of its records).
pub(super) const MAX_BATCH: usize = 128;
/// How each batch's transaction starts.
/// (READ COMMITTED whatever the server's default: a creation counts what committed before its
/// statement, after its batch took the counts' locks; see `postgres/quota.rs`.)
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '3s'";
/// Transactions in flight at once, each on a connection of its own.
pub(super) const WRITERS: usize = 4;
/// Writes waiting for a transaction before callers wait to hand theirs over.
const QUEUE: usize = 1024;

/// One caller's write.
pub(super) enum Write {
    /// A record written or deleted (`row` is `None`), compare-and-swap on `expected` (`None`:
    /// no record).
    Record {
        table: &'static Table,
        id: String,
        expected: Option<i64>,
        row: Option<Row>,
    },
    /// Audit records, appended in this order.
    Audit(Vec<AuditRecord>),
    /// A new record within its quota counts (`keys`, with `limits` in the same order): written
    /// only when none of them is full and the id is free. The batch takes every count's lock
    /// first (`postgres/quota.rs`).
    Create {
        table: &'static Table,
        id: String,
        row: Row,
        keys: Vec<String>,
        limits: Vec<i64>,
    },
}

/// A record as the tables keep it.
pub(super) struct Row {
    pub(super) json: Json<Box<RawValue>>,
    pub(super) version: i64,
    pub(super) orphaned: bool,
    pub(super) pending: bool,
    pub(super) instance_id: Option<String>,
}

/// What a write did.
#[derive(Debug)]
pub(super) enum Done {
    Written,
    Deleted,
    Conflict,
    /// The audit records' `seq`s, in their order.
    Appended(Vec<i64>),
    /// A quota count was full: nothing written.
    Full {
        key: String,
        usage: u64,
        limit: u64,
    },
}

struct Queued {
    write: Write,
    answer: oneshot::Sender<Result<Done, RoutingError>>,
}

/// The queue of writes; its writer tasks end when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Writes {
    queue: mpsc::Sender<Queued>,
    /// Transactions committed so far (how well the writes were grouped; the tests read it).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    commits: Arc<AtomicU64>,
}

impl Writes {
    /// Starts the writer tasks (on the current runtime).
    pub(super) fn start(db: Connections) -> Writes {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        let commits = Arc::new(AtomicU64::new(0));
        for _ in 0..WRITERS {
            tokio::spawn(writer(db.clone(), waiting.clone(), commits.clone()));
        }
        Writes { queue, commits }
    }

    /// Transactions committed so far.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Writes `write` in the next batch; its answer once the batch committed.
    pub(super) async fn write(&self, context: &str, write: Write) -> Result<Done, RoutingError> {
        let (answer, answered) = oneshot::channel();
        let closed = || RoutingError::Store(format!("postgres: {context}: the store is closed"));
        // A batch answers within its own time limits; this bounds the wait for a place in the
        // queue and in a batch as well.
        let limit = CONNECT_TIMEOUT + CALL_TIMEOUT * 2;
        let deadline = tokio::time::Instant::now() + limit;
        match tokio::time::timeout_at(deadline, self.queue.send(Queued { write, answer })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(closed()),
            Err(_) => {
                return Err(RoutingError::Store(format!(
                    "postgres: {context}: the writes queued before this one took more than {} s",
                    limit.as_secs()
                )));
            }
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(RoutingError::Store(format!(
                "postgres: {context}: no answer within {} s; the write may or may not have been made",
                limit.as_secs()
            ))),
        }
    }
}

/// One writer task: takes every write waiting, commits them together, answers each.
async fn writer(db: Connections, waiting: Arc<Mutex<mpsc::Receiver<Queued>>>, commits: Arc<AtomicU64>) {
    loop {
        let mut batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut size = first.write.size();
            let mut batch = vec![first];
            while size < MAX_BATCH {
                match waiting.try_recv() {
                    Ok(next) => {
                        size += next.write.size();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        // Every batch locks rows in one order, so two batches (of this replica or another) never
        // wait for each other's rows in a circle. The sort is stable: writes to one id keep their
        // order; the others were all waiting at once, so any order of them is one they could
        // have come in.
        batch.sort_by(|a, b| a.write.lock_order().cmp(&b.write.lock_order()));
        let (writes, answers): (Vec<Write>, Vec<_>) = batch.into_iter().map(|q| (q.write, q.answer)).unzip();
        let done = commit_or_each(&db, &writes, &commits).await;
        for (answer, done) in answers.into_iter().zip(done) {
            // A caller that stopped waiting has its answer dropped.
            let _ = answer.send(done);
        }
    }
}

impl Write {
    /// Where it comes in a batch: instances, then bindings, each by id, then audit records
    /// (which lock no row another write takes).
    pub(super) fn lock_order(&self) -> (u8, &str) {
        match self {
            Write::Record { table, id, .. } | Write::Create { table, id, .. } => (table.lock_rank, id),
            Write::Audit(_) => (u8::MAX, ""),
        }
    }

    /// Statements it takes.
    fn size(&self) -> usize {
        match self {
            Write::Record { .. } | Write::Create { .. } => 1,
            Write::Audit(records) => records.len().max(1),
        }
    }
}

/// How a batch ended.
enum Outcome {
    Committed(Vec<Done>),
    /// The server refused a statement: nothing was committed.
    Refused(PgError),
    /// The connection failed, or a time limit passed: whether it committed is unknown.
    /// (Its message.)
    Unknown(String),
}

/// Commits `writes` in one transaction; when the server refuses it, each write alone. One answer
/// per write, in order.
async fn commit_or_each(
    db: &Connections,
    writes: &[Write],
    commits: &AtomicU64,
) -> Vec<Result<Done, RoutingError>> {
    let context = "write records";
    match commit(db, writes, commits).await {
        Outcome::Committed(done) => done.into_iter().map(Ok).collect(),
        Outcome::Unknown(e) => writes
            .iter()
            .map(|_| Err(RoutingError::Store(e.clone())))
            .collect(),
        Outcome::Refused(e) if writes.len() == 1 => vec![Err(db.error(context, &e))],
        Outcome::Refused(_) => {
            let mut answers = Vec::with_capacity(writes.len());
            for write in writes {
                answers.push(match commit(db, std::slice::from_ref(write), commits).await {
                    Outcome::Committed(mut done) => done.pop().ok_or_else(|| {
                        RoutingError::Store(format!("postgres: {context}: no answer for the write"))
                    }),
                    Outcome::Refused(e) => Err(db.error(context, &e)),
                    Outcome::Unknown(e) => Err(RoutingError::Store(e)),
                });
            }
            answers
        }
    }
}

/// One statement of the pipeline.
enum Step<'a> {
    Begin,
    /// A record's write, and how its answer reads.
    Record(&'a Statement, Params<'a>, Reads),
    Audit(&'a Statement, Params<'a>),
    /// The locks of the batch's quota counts.
    Lock(&'a Statement, Params<'a>),
    Commit,
}

/// How a record write's answer reads.
#[derive(Clone, Copy)]
enum Reads {
    /// Rows written: one, or none (a conflict).
    Written,
    /// Rows deleted (returned): one, or none (a conflict).
    Deleted,
    /// A delete expecting no record: `true` when there is none.
    Absent,
    /// A creation within quota counts (see [`Write::Create`]).
    Created,
}

/// What one statement answered.
enum Answer {
    /// `BEGIN`, `COMMIT`, or a statement the server refused.
    Nothing,
    Done(Done),
    Seq(i64),
}

/// Sends `BEGIN`, every write and `COMMIT` as one pipeline on one connection.
async fn commit(db: &Connections, writes: &[Write], commits: &AtomicU64) -> Outcome {
    let context = "write records";
    let client = match db.client(context).await {
        Ok(client) => client,
        Err(e) => return Outcome::Unknown(e.to_string()),
    };
    let answer = tokio::time::timeout(CALL_TIMEOUT, async {
        // Prepared first (a round trip only the first time on a connection), so that every step
        // below sends its request when first polled.
        let mut statements = Vec::with_capacity(writes.len());
        for write in writes {
            statements.push(client.prepare_cached(sql(write).0).await?);
        }
        let counts: Vec<&String> = writes
            .iter()
            .flat_map(|write| match write {
                Write::Create { keys, .. } => keys.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        let lock = match counts.is_empty() {
            true => None,
            false => Some(client.prepare_cached(LOCK_COUNTS).await?),
        };
        let audits: Vec<Vec<AuditValues<'_>>> = writes
            .iter()
            .map(|write| match write {
                Write::Audit(records) => records.iter().map(AuditValues::of).collect(),
                Write::Record { .. } | Write::Create { .. } => Vec::new(),
            })
            .collect();
        let mut steps = vec![Step::Begin];
        if let Some(lock) = &lock {
            steps.push(Step::Lock(lock, vec![&counts]));
        }
        for ((write, statement), audit) in writes.iter().zip(&statements).zip(&audits) {
            match write {
                Write::Record {
                    id, expected, row, ..
                } => {
                    let mut params: Params<'_> = vec![id];
                    match row {
                        Some(row) => {
                            params.push(&row.json);
                            params.push(&row.version);
                            params.push(&row.orphaned);
                            params.push(&row.pending);
                            if let Some(expected) = expected {
                                params.push(expected);
                            }
                            if let Some(instance_id) = &row.instance_id {
                                params.push(instance_id);
                            }
                        }
                        None => {
                            if let Some(expected) = expected {
                                params.push(expected);
                            }
                        }
                    }
                    steps.push(Step::Record(statement, params, sql(write).1));
                }
                Write::Audit(_) => {
                    for values in audit {
                        steps.push(Step::Audit(statement, values.params()));
                    }
                }
                Write::Create {
                    id,
                    row,
                    keys,
                    limits,
                    ..
                } => {
                    let mut params: Params<'_> =
                        vec![id, &row.json, &row.version, &row.orphaned, &row.pending];
                    if let Some(instance_id) = &row.instance_id {
                        params.push(instance_id);
                    }
                    params.push(keys);
                    params.push(limits);
                    steps.push(Step::Record(statement, params, Reads::Created));
                }
            }
        }
        steps.push(Step::Commit);
        let answers = in_order(steps.into_iter().map(|step| run(&client, step)).collect()).await;
        Ok::<_, PgError>((answers, lock.is_some()))
    })
    .await;
    let (answers, locked) = match answer {
        Ok(Ok(answers)) => answers,
        Ok(Err(e)) if e.as_db_error().is_some() => return Outcome::Refused(e),
        Ok(Err(e)) => return Outcome::Unknown(db.error(context, &e).to_string()),
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            return Outcome::Unknown(format!(
                "postgres {}: {context}: no answer within {} s; the writes may or may not have been made",
                db.server,
                CALL_TIMEOUT.as_secs()
            ));
        }
    };
    let outcome = settle(db, writes, locked, answers);
    if matches!(outcome, Outcome::Committed(_)) {
        commits.fetch_add(1, Ordering::Relaxed);
    } else {
        // Never hand on a connection whose transaction may not have ended.
        drop(deadpool_postgres::Object::take(client));
    }
    outcome
}

/// The statement of a write, and how its answer reads.
fn sql(write: &Write) -> (&'static str, Reads) {
    match write {
        Write::Record {
            table, expected, row, ..
        } => match (row, expected) {
            (Some(_), None) => (table.insert, Reads::Written),
            (Some(_), Some(_)) => (table.update, Reads::Written),
            (None, None) => (table.delete_absent, Reads::Absent),
            (None, Some(_)) => (table.delete, Reads::Deleted),
        },
        Write::Audit(_) => (APPEND_AUDIT, Reads::Written),
        Write::Create { table, .. } => (table.create, Reads::Created),
    }
}

/// An audit record's columns.
struct AuditValues<'a> {
    at_ms: i64,
    kind: &'static str,
    outcome: &'static str,
    record: &'a AuditRecord,
    json: Json<&'a AuditRecord>,
}

impl<'a> AuditValues<'a> {
    fn of(record: &'a AuditRecord) -> Self {
        AuditValues {
            at_ms: int(record.at_ms),
            kind: record.kind.as_str(),
            outcome: record.outcome.as_str(),
            record,
            json: Json(record),
        }
    }

    fn params(&self) -> Params<'_> {
        vec![
            &self.at_ms,
            &self.kind,
            &self.record.actor,
            &self.record.operation,
            &self.outcome,
            &self.record.instance_id,
            &self.record.binding_id,
            &self.json,
        ]
    }
}

/// Runs one step. Every step sends its one request when first polled (tokio-postgres sends a
/// request then, given a prepared [`Statement`]: a statement's text would be prepared first, a
/// round trip that would let the requests after it overtake it), which is what keeps the pipeline
/// in order.
async fn run(client: &deadpool_postgres::Object, step: Step<'_>) -> Result<Answer, PgError> {
    Ok(match step {
        // A write waiting on a row another transaction holds gives up before the batch's time
        // limit: the server refuses it, and the batch's other writes are tried alone.
        Step::Begin => client.batch_execute(BEGIN).await.map(|()| Answer::Nothing)?,
        Step::Commit => client.batch_execute("COMMIT").await.map(|()| Answer::Nothing)?,
        Step::Lock(statement, params) => client
            .execute(statement, &params)
            .await
            .map(|_| Answer::Nothing)?,
        Step::Record(statement, params, Reads::Created) => {
            let rows = client.query(statement, &params).await?;
            let Some(row) = rows.first() else {
                return Ok(Answer::Done(Done::Conflict));
            };
            let (written, existed): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
            let full: Option<String> = row.try_get(2)?;
            Answer::Done(match (written, existed, full) {
                (1, _, _) => Done::Written,
                (_, true, _) | (_, _, None) => Done::Conflict,
                (_, false, Some(key)) => Done::Full {
                    key,
                    usage: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
                    limit: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
                },
            })
        }
        Step::Record(statement, params, Reads::Written) => {
            let written = client.execute(statement, &params).await? == 1;
            Answer::Done(if written { Done::Written } else { Done::Conflict })
        }
        Step::Record(statement, params, Reads::Deleted) => {
            let deleted = !client.query(statement, &params).await?.is_empty();
            Answer::Done(if deleted { Done::Deleted } else { Done::Conflict })
        }
        Step::Record(statement, params, Reads::Absent) => {
            let rows = client.query(statement, &params).await?;
            let absent = rows.first().map(|row| row.try_get::<_, bool>(0)).transpose()?;
            Answer::Done(if absent == Some(true) {
                Done::Deleted
            } else {
                Done::Conflict
            })
        }
        Step::Audit(statement, params) => {
            let rows = client.query(statement, &params).await?;
            match rows.first().map(|row| row.try_get::<_, i64>(0)).transpose()? {
                Some(seq) => Answer::Seq(seq),
                None => Answer::Nothing,
            }
        }
    })
}

/// Polls every future to its end, each time in their order; their outputs in the same order.
/// The first round polls them one after the other, so the requests they send go out in order.
async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx: &mut Context<'_>| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The batch's outcome from every statement's answer (`BEGIN`, the writes, `COMMIT`). A
/// statement the server refused aborted the transaction: its `COMMIT` answers `ROLLBACK` (not
/// an error), so the refusal is what says that nothing was committed.
fn settle(
    db: &Connections,
    writes: &[Write],
    locked: bool,
    answers: Vec<Result<Answer, PgError>>,
) -> Outcome {
    let context = "write records";
    let mut answers = answers;
    let commit = answers.pop();
    let mut refused = None;
    let mut unknown = None;
    let mut read = answers.into_iter().map(|answer| match answer {
        Ok(answer) => answer,
        Err(e) if e.as_db_error().is_some() => {
            refused.get_or_insert(e);
            Answer::Nothing
        }
        Err(e) => {
            unknown.get_or_insert_with(|| db.error(context, &e).to_string());
            Answer::Nothing
        }
    });
    let began = read.next();
    if locked {
        read.next();
    }
    let mut done = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Record { .. } | Write::Create { .. } => done.push(match read.next() {
                Some(Answer::Done(one)) => one,
                _ => Done::Conflict,
            }),
            Write::Audit(records) => {
                let seqs = records
                    .iter()
                    .filter_map(|_| match read.next() {
                        Some(Answer::Seq(seq)) => Some(seq),
                        _ => None,
                    })
                    .collect();
                done.push(Done::Appended(seqs));
            }
        }
    }
    drop(read);
    // The `COMMIT` itself: refused or unanswered, it may have committed (a server shutting down
    // can end the connection after committing), unless a write before it was refused.
    let committed = match commit {
        Some(Ok(answer)) => Some(answer),
        Some(Err(e)) if refused.is_none() => {
            unknown.get_or_insert_with(|| db.error(context, &e).to_string());
            None
        }
        Some(Err(_)) | None => None,
    };
    // A refusal means the server aborted the transaction, whatever happened after it.
    match (refused, unknown, began, committed) {
        (Some(e), _, _, _) => Outcome::Refused(e),
        (None, Some(e), _, _) => Outcome::Unknown(e),
        (None, None, Some(_), Some(_)) => Outcome::Committed(done),
        (None, None, _, _) => Outcome::Unknown(format!("postgres: {context}: an answer is missing")),
    }
}
