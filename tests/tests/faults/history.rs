//! The recorded history: every operation the clients attempted, with its
//! outcome. Bodies of sends are unique, which lets the checker recognise a
//! message (or a duplicate of it) without knowing its id.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A definite failure (the service said no).
    Failed(String),
    /// No answer in time: it may or may not have taken effect.
    Unknown,
}

/// Some fields are only read through `Debug`, in anomaly reports and the
/// history dump.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub enum Op {
    Send {
        from: usize,
        /// A main account's index, or the number of main accounts plus a
        /// spare's index (`workload::spare_index`).
        to: usize,
        body: String,
        /// The message id, when acknowledged.
        id: Option<String>,
    },
    History {
        account: usize,
        peer: usize,
        pages: usize,
        messages: usize,
        /// The replica that answered, and each message's read flag there.
        server: Option<u32>,
        observed: Vec<(String, bool)>,
    },
    Unread {
        account: usize,
        count: u64,
        server: Option<u32>,
        observed: Vec<(String, bool)>,
    },
    MarkRead {
        account: usize,
        ids: Vec<String>,
    },
    Delete {
        account: usize,
        ids: Vec<String>,
    },
    CreateAccount {
        spare: usize,
    },
    DeleteAccount {
        spare: usize,
    },
    /// A spare account's password change, with the session token it was
    /// made from (which an acknowledged change ends everywhere).
    ChangePassword {
        spare: usize,
        new_password: String,
        old_token: Option<String>,
    },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Send { .. } => "send",
            Op::History { .. } => "history",
            Op::Unread { .. } => "unread",
            Op::MarkRead { .. } => "mark-read",
            Op::Delete { .. } => "delete",
            Op::CreateAccount { .. } => "create-account",
            Op::DeleteAccount { .. } => "delete-account",
            Op::ChangePassword { .. } => "change-password",
        }
    }
}

#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub client: usize,
    pub start: Duration,
    pub end: Duration,
    pub op: Op,
    pub outcome: Outcome,
}

pub struct History {
    started: Instant,
    /// The real time at `started`, in ms since the Unix epoch.
    started_wall_ms: i64,
    records: Mutex<Vec<Record>>,
}

impl History {
    pub fn new(started: Instant) -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        Self {
            started,
            started_wall_ms: (since_epoch.saturating_sub(started.elapsed())).as_millis() as i64,
            records: Mutex::new(Vec::new()),
        }
    }

    /// The real time at which the history's clock started, in ms since the
    /// Unix epoch.
    pub fn started_wall_ms(&self) -> i64 {
        self.started_wall_ms
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn record(&self, client: usize, start: Duration, op: Op, outcome: Outcome) {
        let mut records = self.records.lock().unwrap();
        let id = records.len() as u64;
        records.push(Record {
            id,
            client,
            start,
            end: self.started.elapsed(),
            op,
            outcome,
        });
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }
}
