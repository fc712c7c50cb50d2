//! The replicas a client knows, and the order in which it tries them.
//!
//! The list is whatever `ListServers` last said, from whichever replica
//! answered; before the first answer it is just the seed URLs the client was
//! started with (a browser's own origin). After a failure the client moves
//! *on* from the failed replica rather than back to the first one, so that
//! clients spread over the survivors; replicas the answering one believes
//! down come after the live ones, and the failed one comes last (it may only
//! have had a blip).

use crate::proto;

/// One replica as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Replica id; 0 for a seed URL whose replica has not answered yet.
    pub id: u32,
    /// Base URL of its client API, e.g. `http://127.0.0.1:7001`.
    pub url: String,
    /// Whether the replica that last sent the list believed it up.
    pub live: bool,
}

impl ServerInfo {
    pub fn seed(url: impl Into<String>) -> Self {
        Self {
            id: 0,
            url: url.into(),
            live: true,
        }
    }

    /// "replica 2", or the URL while the id is unknown.
    pub fn name(&self) -> String {
        if self.id == 0 {
            self.url.clone()
        } else {
            format!("replica {}", self.id)
        }
    }
}

impl From<&proto::Server> for ServerInfo {
    fn from(s: &proto::Server) -> Self {
        Self {
            id: s.id,
            url: s.url.trim_end_matches('/').to_string(),
            live: s.live,
        }
    }
}

/// The list from a `ListServers` answer, in id order.
pub fn from_response(resp: &proto::ListServersResponse) -> Vec<ServerInfo> {
    let mut servers: Vec<ServerInfo> = resp.servers.iter().map(ServerInfo::from).collect();
    servers.sort_by_key(|s| s.id);
    servers.dedup_by_key(|s| s.id);
    servers
}

/// Every replica worth trying after `failed` (`None` when no replica is in
/// use yet), in the order to try them: the known list rotated to start after
/// `failed`, live ones first, then seeds not in the list, and `failed` itself
/// last. A replica is recognised by id as well as by URL, since the URL a
/// browser was served from may be another name for a listed one.
pub fn candidates(
    known: &[ServerInfo],
    seeds: &[String],
    failed: Option<&ServerInfo>,
) -> Vec<ServerInfo> {
    let is_failed =
        |s: &ServerInfo| failed.is_some_and(|f| s.url == f.url || (f.id != 0 && s.id == f.id));
    let start = known.iter().position(is_failed).map_or(0, |i| i + 1);
    let rotated = known[start..].iter().chain(&known[..start]);
    let others: Vec<&ServerInfo> = rotated.filter(|s| !is_failed(s)).collect();
    let mut out: Vec<ServerInfo> = others.iter().filter(|s| s.live).copied().cloned().collect();
    out.extend(others.iter().filter(|s| !s.live).copied().cloned());
    for seed in seeds {
        let seed = seed.trim_end_matches('/');
        if failed.is_none_or(|f| f.url != seed) && !out.iter().any(|s| s.url == seed) {
            out.push(ServerInfo::seed(seed));
        }
    }
    out.extend(failed.cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: u32, live: bool) -> ServerInfo {
        ServerInfo {
            id,
            url: format!("http://r{id}"),
            live,
        }
    }

    fn ids(v: &[ServerInfo]) -> Vec<u32> {
        v.iter().map(|s| s.id).collect()
    }

    #[test]
    fn moves_on_from_the_failed_one_live_first() {
        let known = [s(1, true), s(2, false), s(3, true), s(4, true)];
        assert_eq!(ids(&candidates(&known, &[], Some(&known[0]))), [3, 4, 2, 1]);
        assert_eq!(ids(&candidates(&known, &[], Some(&known[2]))), [4, 1, 2, 3]);
        assert_eq!(ids(&candidates(&known, &[], None)), [1, 3, 4, 2]);
    }

    #[test]
    fn seeds_fill_in_before_the_first_list() {
        let seeds = ["http://origin/".to_string()];
        let c = candidates(&[], &seeds, None);
        assert_eq!(c, [ServerInfo::seed("http://origin")]);
        let c = candidates(&[s(1, true)], &seeds, Some(&s(1, true)));
        assert_eq!(c, [ServerInfo::seed("http://origin"), s(1, true)]);
    }

    #[test]
    fn the_failed_replica_is_known_by_id_under_another_url() {
        // Served as http://localhost:7001, listed as http://r1.
        let known = [s(1, true), s(2, true), s(3, true)];
        let seeds = ["http://localhost:7001".to_string()];
        let failed = ServerInfo {
            id: 1,
            url: seeds[0].clone(),
            live: true,
        };
        let c = candidates(&known, &seeds, Some(&failed));
        let urls: Vec<&str> = c.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls, ["http://r2", "http://r3", "http://localhost:7001"]);
    }

    #[test]
    fn list_is_sorted_and_trimmed() {
        let resp = proto::ListServersResponse {
            servers: vec![
                proto::Server {
                    id: 2,
                    url: "http://b/".into(),
                    live: true,
                },
                proto::Server {
                    id: 1,
                    url: "http://a".into(),
                    live: false,
                },
            ],
            this_server_id: 2,
        };
        let list = from_response(&resp);
        assert_eq!(list[0].url, "http://a");
        assert_eq!(list[1].url, "http://b");
    }
}
