//! `chat-server retire --id N`: removes a replica from the cluster for good
//! (see `replication::retire`), through any other replica.

use std::time::Duration;

use super::{AdminArgs, dial};
use crate::proto::replication::RetireRequest;

pub async fn run(id: u32, args: AdminArgs) -> Result<(), String> {
    let mut client = dial(&args)?;
    let told = tokio::time::timeout(
        Duration::from_secs(30),
        client.retire(RetireRequest {
            id,
            from_peer: false,
        }),
    )
    .await
    .map_err(|_| format!("{} did not answer within 30 s", args.replication_addr))?
    .map_err(|s| format!("{}: {}", args.replication_addr, s.message()))?
    .into_inner()
    .told;
    let told = match told.as_slice() {
        [] => "no other replica is live there".to_string(),
        ids => format!(
            "told {} at once",
            ids.iter()
                .map(|i| format!("replica {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    println!(
        "replica {id} is retired ({told}); every other replica learns it the next time it \
         reaches one that knows"
    );
    Ok(())
}
