//! Node ports: one per Service port of a NodePort or LoadBalancer Service
//! (ports with the same number share one, as on the real API server), and
//! the health check port of a LoadBalancer with `externalTrafficPolicy:
//! Local`. Requested ports are honoured when in range and free.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::fields::{allocates_node_ports, held_ports, needs_health_check_port, number, ports, Spec};
use super::index::Index;
use super::{pick, Network, Problem};

/// The ports one write hands out.
struct Claims<'a> {
    net: &'a Network,
    taken: &'a Index,
    /// What the stored version holds: it may keep them.
    held: Vec<u16>,
    /// What this write has claimed so far.
    mine: Vec<u16>,
}

impl Claims<'_> {
    fn request(&mut self, port: i64, field: &str) -> Result<u16, Problem> {
        let range = self.net.node_ports();
        let Some(n) = u16::try_from(port).ok().filter(|n| range.contains(n)) else {
            return Err(Problem::invalid(
                field,
                port,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    range.start(),
                    range.end()
                ),
            ));
        };
        let free = self.held.contains(&n) || !self.taken.port_taken(n);
        if !free || self.mine.contains(&n) {
            return Err(Problem::invalid(field, port, "provided port is already allocated"));
        }
        self.mine.push(n);
        Ok(n)
    }

    fn next(&mut self) -> Result<u16, Problem> {
        let range = self.net.node_ports();
        let n = pick::free((*range.start()).into(), (*range.end()).into(), |n| {
            let n = n as u16;
            self.taken.port_taken(n) || self.mine.contains(&n)
        })
        .ok_or(Problem::Full { what: "nodePort" })? as u16;
        self.mine.push(n);
        Ok(n)
    }
}

/// Writes back `ports[].nodePort` and `healthCheckNodePort`.
pub fn settle(net: &Network, taken: &Index, old: Option<&Spec>, spec: &mut Spec) -> Result<(), Problem> {
    let mut claims = Claims {
        net,
        taken,
        held: old.map(held_ports).unwrap_or_default(),
        mine: Vec::new(),
    };
    let allocate = allocates_node_ports(spec);
    // The first port asked for by each Service port number, for the
    // numbers' other entries (53/TCP and 53/UDP, say) to share.
    let mut by_port: HashMap<i64, i64> = HashMap::new();
    for p in ports(spec) {
        let n = number(p.get("nodePort"));
        if n != 0 {
            by_port.entry(number(p.get("port"))).or_insert(n);
        }
    }
    let mut seen: HashSet<(String, u16)> = HashSet::new();
    for (i, p) in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.ports[{i}].nodePort");
        let given = number(p.get("nodePort"));
        if given == 0 && !allocate {
            // A LoadBalancer without node ports still gets those asked for.
            continue;
        }
        let wanted = if given != 0 {
            given
        } else {
            by_port.get(&number(p.get("port"))).copied().unwrap_or(0)
        };
        let n = match u16::try_from(wanted) {
            Ok(n) if claims.mine.contains(&n) => n,
            _ if wanted != 0 => claims.request(wanted, &field)?,
            _ => claims.next()?,
        };
        by_port.insert(number(p.get("port")), n.into());
        let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
        if !seen.insert((protocol, n)) {
            return Err(Problem::duplicate(field, n));
        }
        p["nodePort"] = json!(n);
    }
    if needs_health_check_port(spec) {
        let hc = match number(spec.get("healthCheckNodePort")) {
            0 => claims.next()?,
            given => claims.request(given, "spec.healthCheckNodePort")?,
        };
        spec.insert("healthCheckNodePort".into(), json!(hc));
    }
    Ok(())
}
