//! ListServers: the replicas a client may use, for failover.

use chat_shared::proto::{ListServersResponse, Server};

use super::Context;

/// Where the server list comes from: the replication layer's view of its
/// peers (or, for a replica on its own, just itself).
pub trait ServerList: Send + Sync {
    /// Every known replica, this one included, with its liveness as seen
    /// from here.
    fn servers(&self) -> Vec<Server>;
}

pub fn handle(ctx: &Context) -> ListServersResponse {
    ListServersResponse {
        servers: ctx.servers.servers(),
        this_server_id: ctx.replica_id,
    }
}
