//! A small network of hosts on one machine, for partition tests: one Linux
//! network namespace per replica, joined by veth pairs to a bridge in the
//! root namespace (where the test's clients run). A partition between two
//! hosts is a pair of blackhole routes: packets between them vanish, while
//! both stay reachable from the clients.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2. Every namespace, veth and the
//! bridge are removed when the lab is dropped; names carry a random tag so
//! parallel tests never collide.

use std::net::Ipv4Addr;
use std::process::Command;

pub struct NetLab {
    tag: String,
    subnet: [u8; 3],
    hosts: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetLab {
    /// A bridge and `hosts` namespaces, host i (from 1) at 10.a.b.i; the
    /// root namespace at 10.a.b.254.
    pub fn new(hosts: usize) -> Result<Self, String> {
        let r: u32 = rand::random();
        let tag = format!("{:06x}", r & 0xff_ffff);
        let subnet = [10, 100 + (r % 100) as u8, (r >> 8) as u8];
        let lab = Self {
            tag,
            subnet,
            hosts: 0,
        };
        let lab = lab.build(hosts)?;
        Ok(lab)
    }

    fn build(mut self, hosts: usize) -> Result<Self, String> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        let root = format!("{}/24", self.root_ip());
        ip(&["addr", "add", &root, "dev", &bridge])?;
        for i in 1..=hosts {
            let ns = self.netns(i);
            let veth = format!("v{}-{i}", self.tag);
            ip(&["netns", "add", &ns])?;
            self.hosts = i;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.host_ip(i));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", "eth0",
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(self)
    }

    fn bridge(&self) -> String {
        format!("b{}", self.tag)
    }

    /// The namespace of host `i` (from 1).
    pub fn netns(&self, i: usize) -> String {
        format!("chat-{}-{i}", self.tag)
    }

    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], i as u8)
    }

    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], 254)
    }

    fn route(&self, verb: &str, from: usize, to: usize) -> Result<(), String> {
        let dst = format!("{}/32", self.host_ip(to));
        ip(&[
            "netns",
            "exec",
            &self.netns(from),
            "ip",
            "route",
            verb,
            "blackhole",
            &dst,
        ])
    }

    /// Cuts hosts `a` and `b` off from each other (both directions).
    pub fn partition(&self, a: usize, b: usize) -> Result<(), String> {
        self.route("add", a, b)?;
        self.route("add", b, a)
    }

    /// Undoes [`NetLab::partition`] (ignores a partition that is not there).
    pub fn heal(&self, a: usize, b: usize) {
        let _ = self.route("del", a, b);
        let _ = self.route("del", b, a);
    }

    pub fn heal_all(&self) {
        for a in 1..=self.hosts {
            for b in 1..=self.hosts {
                if a != b {
                    let _ = self.route("del", a, b);
                }
            }
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for i in 1..=self.hosts {
            // Deleting the namespace deletes its end of the veth pair, and
            // with it ours.
            let _ = ip(&["netns", "del", &self.netns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
