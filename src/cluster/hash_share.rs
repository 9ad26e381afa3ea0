//! `catalog::shared::SharedHashing` over Redis. The first node takes `{name}:hashing:{key}`
//! (`SET NX PX`, renewed every few seconds by a thread while it hashes, so a node that dies
//! mid-hash frees it within the TTL), hashes, writes `{name}:hashed:{key}` and lets go; the
//! others poll for the record while the claim stands. Any Redis error: hash alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::catalog::shared::SharedHashing;

/// Renews or deletes a claim only while this node owns it, in one step: a claim that expired
/// and was taken by another node in between is left alone.
const RENEW_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const DELETE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// A claim lives this long unless renewed.
const CLAIM_TTL: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for another node's hashing (a claim is renewed only while its node hashes).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3_600);
/// Records are kept a week: nodes that start later find the entry in their own store anyway.
const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3_600);
/// Largest record read back (a torrent of a few hundred thousand pieces, hex).
const MAX_RECORD: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// After a Redis error, entries are hashed alone without asking Redis for this long: a Redis
/// that accepts and never answers (a partition dropping its packets) would otherwise cost every
/// new entry its timeouts, seconds each, and a big folder days.
const DOWN_FOR: Duration = Duration::from_secs(30);
/// Until this long after the node starts, a job that cannot reach Redis waits for it before
/// hashing alone: compose starts a node beside its Redis, and a node that finds it not yet up
/// would hash its whole folder alone, duplicating the other nodes' work.
const START_WAIT: Duration = Duration::from_secs(10);
const START_RETRY: Duration = Duration::from_millis(250);

pub struct HashShare {
    client: redis::Client,
    /// Set when the node stops: a job waiting for another node's hashing stops waiting.
    stop: tokio_util::sync::CancellationToken,
    name: String,
    me: String,
    /// Claims held, with the flag that keeps their renewing thread going.
    held: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Redis failed lately: not asked again before then (`DOWN_FOR`).
    down_until: Mutex<Option<Instant>>,
    /// When the node started (`START_WAIT`), and whether a job has said it waits for Redis.
    born: Instant,
    said_waiting: AtomicBool,
}

impl HashShare {
    pub(super) fn new(
        client: redis::Client,
        name: &str,
        me: &str,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        HashShare {
            client,
            stop,
            name: name.to_owned(),
            me: me.to_owned(),
            held: Mutex::new(HashMap::new()),
            down_until: Mutex::new(None),
            born: Instant::now(),
            said_waiting: AtomicBool::new(false),
        }
    }

    /// Whether Redis may be asked now (it has not failed within `DOWN_FOR`).
    fn usable(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_none_or(|until| Instant::now() >= until)
    }

    fn failed(&self) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + DOWN_FOR);
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(conn)
    }

    /// `connect`, waiting for a Redis that cannot be reached (refused, not resolved yet) while
    /// the node is young (`START_WAIT`). A Redis that takes the connection and never answers
    /// is not waited for: its commands time out.
    fn connect_for_job(&self) -> redis::RedisResult<redis::Connection> {
        loop {
            match self.connect() {
                Err(e) if self.born.elapsed() < START_WAIT && !self.stop.is_cancelled() => {
                    if !self.said_waiting.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            "cluster: redis not up yet ({e}): hashing waits for it until {} s \
                             after start",
                            START_WAIT.as_secs()
                        );
                    }
                    std::thread::sleep(START_RETRY);
                }
                other => return other,
            }
        }
    }

    fn claim_key(&self, key: &str) -> String {
        format!("{}:hashing:{key}", self.name)
    }

    fn record_key(&self, key: &str) -> String {
        format!("{}:hashed:{key}", self.name)
    }

    fn try_find_or_claim(&self, key: &str) -> redis::RedisResult<Option<Vec<u8>>> {
        let mut conn = self.connect_for_job()?;
        let started = Instant::now();
        loop {
            let record: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.record_key(key))
                .query(&mut conn)?;
            if let Some(r) = record.filter(|r| r.len() <= MAX_RECORD) {
                return Ok(Some(r));
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(self.claim_key(key))
                .arg(&self.me)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL.as_millis() as u64)
                .query(&mut conn)?;
            if claimed.is_some() || started.elapsed() > MAX_WAIT {
                self.hold(key);
                return Ok(None);
            }
            if self.stop.is_cancelled() {
                // Stopping: no claim taken, nothing recorded; the job goes on alone.
                return Ok(None);
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Keeps the claim alive from a thread until `record` or `release`.
    fn hold(&self, key: &str) {
        let going = Arc::new(AtomicBool::new(true));
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), going.clone());
        let client = self.client.clone();
        let claim = self.claim_key(key);
        let me = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("cluster-claim".into())
            .spawn(move || {
                while going.load(Ordering::Relaxed) {
                    std::thread::sleep(RENEW_EVERY);
                    if !going.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(mut conn) = client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                        let _: redis::RedisResult<i64> = redis::Script::new(RENEW_IF_OURS)
                            .key(&claim)
                            .arg(&me)
                            .arg(CLAIM_TTL.as_millis() as u64)
                            .invoke(&mut conn);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("cluster: cannot renew the hashing claim: {e}");
        }
    }

    /// Stops renewing the claim and deletes it if it is still ours.
    fn let_go(&self, key: &str, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        self.stop_renewing(key);
        let _: i64 = redis::Script::new(DELETE_IF_OURS)
            .key(self.claim_key(key))
            .arg(&self.me)
            .invoke(conn)?;
        Ok(())
    }
}

impl SharedHashing for HashShare {
    fn find_or_claim(&self, key: &str) -> Option<Vec<u8>> {
        if !self.usable() {
            return None;
        }
        match self.try_find_or_claim(key) {
            Ok(found) => found,
            Err(e) => {
                self.failed();
                tracing::info!(
                    "cluster: redis unreachable ({e}): hashing alone for the next {} s",
                    DOWN_FOR.as_secs()
                );
                None
            }
        }
    }

    fn record(&self, key: &str, record: &[u8]) {
        if !self.usable() {
            self.stop_renewing(key);
            return;
        }
        let wrote = self.connect().and_then(|mut conn| {
            let _: () = redis::cmd("SET")
                .arg(self.record_key(key))
                .arg(record)
                .arg("PX")
                .arg(RECORD_TTL.as_millis() as u64)
                .query(&mut conn)?;
            self.let_go(key, &mut conn)
        });
        if let Err(e) = wrote {
            self.failed();
            self.stop_renewing(key);
            tracing::info!("cluster: hashes not shared ({e})");
        }
    }

    fn release(&self, key: &str) {
        if !self.usable()
            || self
                .connect()
                .and_then(|mut conn| self.let_go(key, &mut conn))
                .is_err()
        {
            self.stop_renewing(key);
        }
    }
}

impl HashShare {
    fn stop_renewing(&self, key: &str) {
        if let Some(going) = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
        {
            going.store(false, Ordering::Relaxed);
        }
    }
}
