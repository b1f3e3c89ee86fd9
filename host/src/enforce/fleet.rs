//! Fleet sharing: agents that use one Redis brain share their ban decisions through a Redis
//! stream (`logsec:decisions` unless `[response] fleet_stream` says otherwise), so a ban decided on one host is applied on the others, each in
//! its own backend, within the time of one `XREAD` wake-up (milliseconds).
//!
//! Invariants:
//! - A stream, not pub/sub: an agent that starts, or reconnects after an outage, reads what it
//!   missed (the stream keeps the latest [`STREAM_MAXLEN`] changes) and applies what is still in
//!   force.
//! - Each message names the agent instance that sent it; an agent skips its own.
//! - A message is data: it is parsed into a [`Decision`] (whose value must be an address or block)
//!   and goes through the same allowlist as local decisions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::decisions::Decision;

/// The stream decisions are shared through, by default (`[response] fleet_stream`).
pub const STREAM: &str = "logsec:decisions";
/// Changes the stream keeps (approximately).
pub const STREAM_MAXLEN: usize = 100_000;
/// How long one `XREAD` waits for news.
const BLOCK: Duration = Duration::from_secs(1);

/// What a message asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Ban.
    Add,
    /// Lift the ban.
    Lift,
}

/// One change shared with the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sending agent process.
    pub instance: String,
    /// Ban or lift.
    pub op: Op,
    /// The decision.
    pub decision: Decision,
}

/// A connection to the fleet's stream. Plain blocking connections on the enforcer's own threads:
/// an XADD is one round trip, and the follower's blocking XREAD has a thread to itself.
pub struct Fleet {
    client: redis::Client,
    stream: String,
    instance: String,
    conn: Option<redis::Connection>,
}

impl Clone for Fleet {
    /// The same fleet, without the connection (each user connects on its own).
    fn clone(&self) -> Self {
        Fleet::new(self.client.clone(), self.stream.clone(), self.instance.clone())
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("stream", &self.stream)
            .field("instance", &self.instance)
            .finish()
    }
}

/// A blocking connection whose reads give up after `read_timeout`.
fn connect(client: &redis::Client, read_timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(Duration::from_secs(3))?;
    conn.set_read_timeout(Some(read_timeout))?;
    conn.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(conn)
}

impl Fleet {
    /// The fleet sharing `stream` behind `client`, as agent process `instance`.
    pub fn new(client: redis::Client, stream: String, instance: String) -> Fleet {
        Fleet {
            client,
            stream,
            instance,
            conn: None,
        }
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Shares `decision` with the fleet (blocking: one round trip; reconnects once after an
    /// error).
    pub fn publish(&mut self, op: Op, decision: &Decision) -> anyhow::Result<()> {
        let msg = serde_json::to_string(&Message {
            instance: self.instance.clone(),
            op,
            decision: decision.clone(),
        })?;
        let mut last = None;
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(connect(&self.client, Duration::from_secs(3))?);
            }
            let conn = self.conn.as_mut().expect("connected above");
            let sent: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAXLEN)
                .arg("*")
                .arg("m")
                .arg(&msg)
                .query(conn);
            match sent {
                Ok(_) => return Ok(()),
                Err(e) => {
                    self.conn = None;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("two failed attempts").into())
    }

    /// Follows the stream from its start until `tx` closes, sending other agents' messages;
    /// reconnects after errors. Blocks: run it on a thread of its own.
    pub fn follow(self, tx: tokio::sync::mpsc::UnboundedSender<Message>) {
        let mut last = "0".to_owned();
        let mut failures = 0u32;
        let mut conn: Option<redis::Connection> = None;
        loop {
            if tx.is_closed() {
                return;
            }
            let reading = conn.is_some();
            let read = match conn.as_mut() {
                Some(c) => redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(&last)
                    .query::<Option<redis::streams::StreamReadReply>>(c),
                None => connect(&self.client, BLOCK + Duration::from_secs(5)).map(|c| {
                    conn = Some(c);
                    None
                }),
            };
            let reply = match read {
                Ok(r) => r,
                Err(e) => {
                    // Said at once, then every 30th failure in a row.
                    if failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, "cannot read the fleet's decisions from Redis; retrying");
                    }
                    failures += 1;
                    conn = None;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if reading {
                failures = 0;
            }
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    last = entry.id.clone();
                    let Some(text) = entry.get::<String>("m") else {
                        continue;
                    };
                    match serde_json::from_str::<Message>(&text) {
                        Ok(m) if m.instance == self.instance => {}
                        Ok(m) => {
                            if tx.send(m).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(id = %entry.id, error = %e, "a fleet message is not a decision; skipped")
                        }
                    }
                }
            }
        }
    }
}
