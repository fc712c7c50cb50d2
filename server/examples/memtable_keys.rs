//! What a key costs fjall, by the key's shape: inserts into one memtable
//! (60 000 keys, batches of 100, no fsync) and point reads of absent keys,
//! for the shapes of our state keys (`state/keys.rs`) and a compact
//! alternative. Prints ns per key; docs/performance.md cites it.
//!
//! `cargo run --release -p chat-server --example memtable_keys`
use fjall::{Database, KeyspaceCreateOptions};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::time::Instant;

fn run(name: &str, make: &dyn Fn(&mut SmallRng, u64) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path()).open().unwrap();
    let ks = db
        .keyspace("s", || {
            KeyspaceCreateOptions::default().max_memtable_size(64 << 20)
        })
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(7);
    let n = 60_000u64;
    let keys: Vec<Vec<u8>> = (0..n).map(|i| make(&mut rng, i)).collect();
    let val = vec![7u8; 60];
    let t = Instant::now();
    for chunk in keys.chunks(100) {
        let mut b = db.batch().durability(None);
        for k in chunk {
            b.insert(&ks, k.clone(), val.clone());
        }
        b.commit().unwrap();
    }
    let e = t.elapsed();
    // point reads of absent keys
    let t2 = Instant::now();
    let mut hits = 0;
    for _ in 0..60_000 {
        let k = make(&mut rng, n + 1);
        if ks.get(&k).unwrap().is_some() {
            hits += 1;
        }
    }
    println!(
        "{name:40} insert {:6.0} ns/key   absent get {:6.0} ns  ({hits})",
        e.as_nanos() as f64 / n as f64,
        t2.elapsed().as_nanos() as f64 / 60_000.0
    );
}

fn id(r: &mut SmallRng, pool: u64) -> [u8; 16] {
    let mut s = SmallRng::seed_from_u64(r.random_range(0..pool));
    s.random()
}

fn main() {
    for _ in 0..2 {
        run("17-byte random (a, m, k)", &|r, _| {
            let mut k = vec![b'm'];
            k.extend_from_slice(&r.random::<[u8; 16]>());
            k
        });
        run("57-byte h: 64 accounts, hlc, msg id", &|r, i| {
            let mut k = vec![b'h'];
            k.extend_from_slice(&id(r, 64));
            k.extend_from_slice(&id(r, 64));
            k.extend_from_slice(&(1_700_000_000_000u64 << 16 | i).to_be_bytes());
            k.extend_from_slice(&r.random::<[u8; 16]>());
            k
        });
        run("33-byte v: same 4096 keys, overwritten", &|r, _| {
            let mut k = vec![b'v'];
            k.extend_from_slice(&id(r, 64));
            k.extend_from_slice(&id(r, 64));
            k
        });
        run("17-byte k: same 64 keys, overwritten", &|r, _| {
            let mut k = vec![b'k'];
            k.extend_from_slice(&id(r, 64));
            k
        });
        run("20-byte: 4-byte conv no, hlc, 8-byte seq", &|r, i| {
            let mut k = vec![b'h'];
            k.extend_from_slice(&(r.random_range(0..2016u32)).to_be_bytes()[1..]);
            k.extend_from_slice(&(1_700_000_000_000u64 << 16 | i).to_be_bytes());
            k.extend_from_slice(&r.random::<[u8; 8]>());
            k
        });
    }
}
