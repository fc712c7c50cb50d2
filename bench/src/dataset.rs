//! Building large data directories fast: log entries generated here and
//! applied with the server's own state machine and storage
//! (`chat_server::writer::bulk_apply`), so the result is exactly what a
//! replica that accepted those writes would hold.

use std::path::Path;

use chat_server::entry::{Entry, Op};
use chat_server::hlc::{Hlc, wall_clock_ms};
use chat_server::ids::{AccountId, MessageId};
use chat_server::storage::Store;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Password of every generated account.
pub const PASSWORD: &str = "bench-password";

pub struct Dataset {
    /// Entries written (accounts + messages).
    pub entries: u64,
}

/// Writes `accounts` accounts named `<prefix>-<i>` and `messages` messages
/// into `data_dir` as entries of replica `origin`. `pair` picks each
/// message's (sender, recipient) account indexes.
pub fn build(
    data_dir: &Path,
    origin: u32,
    prefix: &str,
    accounts: usize,
    messages: u64,
    seed: u64,
    mut pair: impl FnMut(u64, &mut SmallRng) -> (usize, usize),
) -> Dataset {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let store = Store::open(&chat_server::server::store_dir(data_dir)).expect("open store");
    let hash = chat_server::auth::password::hash_blocking(PASSWORD).expect("hash");
    let mut rng = SmallRng::seed_from_u64(seed);
    // Timestamps in the recent past, one apart per entry.
    let total = accounts as u64 + messages;
    let mut hlc = Hlc::new(0);
    let start_ms = wall_clock_ms().saturating_sub(total / 10 + 60_000);
    let usernames: Vec<String> = (0..accounts).map(|i| format!("{prefix}-{i}")).collect();
    // Each account's id derives from its creation's request id, as the
    // client API makes it (peers check it: `Entry::check_consistent`).
    let creations: Vec<[u8; 16]> = usernames.iter().map(|_| request_id(&mut rng)).collect();
    let ids: Vec<AccountId> = usernames
        .iter()
        .zip(&creations)
        .map(|(u, rid)| AccountId::derive(&u.to_ascii_lowercase(), rid))
        .collect();
    let mut seq = 0u64;
    let mut next = |op: Op, rng: &mut SmallRng, hlc: &mut Hlc| {
        seq += 1;
        Entry {
            origin,
            seq,
            hlc: hlc.tick(start_ms + seq / 10),
            request_id: request_id(rng),
            op,
        }
    };
    let mut entries = Vec::with_capacity(accounts);
    for ((u, id), rid) in usernames.iter().zip(&ids).zip(&creations) {
        let mut e = next(
            Op::CreateAccount {
                account: *id,
                username: u.clone(),
                password_hash: hash.clone(),
            },
            &mut rng,
            &mut hlc,
        );
        e.request_id = *rid;
        entries.push(e);
    }
    let mut n = 0u64;
    let sends = std::iter::from_fn(|| {
        if n == messages {
            return None;
        }
        let (from, to) = pair(n, &mut rng);
        let rid = request_id(&mut rng);
        let op = Op::SendMessage {
            message: MessageId::derive(ids[from], ids[to], &rid),
            sender: ids[from],
            recipient: ids[to],
            body: format!("generated message {n}: the quick brown fox jumps over the lazy dog"),
        };
        n += 1;
        let mut e = next(op, &mut rng, &mut hlc);
        e.request_id = rid;
        Some(e)
    });
    let written = chat_server::writer::bulk_apply(&store, entries.into_iter().chain(sends), 20_000)
        .expect("bulk apply");
    // Written in full and persisted: a replica started on it keeps logging
    // under `origin` rather than taking the next one (`chat_server::origin`).
    store
        .mark_clean_stop()
        .expect("mark the store cleanly stopped");
    Dataset { entries: written }
}

fn request_id(rng: &mut SmallRng) -> [u8; 16] {
    rng.random()
}
