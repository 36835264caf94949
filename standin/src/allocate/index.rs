//! Which addresses and node ports stored Services hold, kept up to date
//! from the changes the store publishes.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::fields::{held_ips, held_ports, Spec};
use crate::store::EventType;

#[derive(Debug, Clone, Default)]
pub struct Index {
    ips: HashSet<IpAddr>,
    ports: HashSet<u16>,
}

fn spec_of(svc: &Value) -> Option<&Spec> {
    svc.get("spec").and_then(Value::as_object)
}

impl Index {
    pub fn ip_taken(&self, ip: &IpAddr) -> bool {
        self.ips.contains(ip)
    }

    pub fn port_taken(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    /// A Service was added, modified (`old` is the version before) or
    /// deleted.
    pub fn follow(&mut self, ty: EventType, object: &Value, old: Option<&Value>) {
        match ty {
            EventType::Added => self.hold(object),
            EventType::Modified => {
                if let Some(old) = old {
                    self.release(old);
                }
                self.hold(object);
            }
            // Both: the write that removed the last finalizer may also
            // have changed what the Service asked for.
            EventType::Deleted => {
                self.release(object);
                if let Some(old) = old {
                    self.release(old);
                }
            }
        }
    }

    fn hold(&mut self, svc: &Value) {
        if let Some(spec) = spec_of(svc) {
            self.ips.extend(held_ips(spec));
            self.ports.extend(held_ports(spec));
        }
    }

    fn release(&mut self, svc: &Value) {
        if let Some(spec) = spec_of(svc) {
            for ip in held_ips(spec) {
                self.ips.remove(&ip);
            }
            for port in held_ports(spec) {
                self.ports.remove(&port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_what_services_hold() {
        let mut index = Index::default();
        let a = json!({"spec":{"clusterIPs":["10.43.0.5","fd00:43::5"],"ports":[{"port":80,"nodePort":30080}],
                       "healthCheckNodePort":30081}});
        index.follow(EventType::Added, &a, None);
        assert!(index.ip_taken(&"fd00:43::5".parse().unwrap()));
        assert!(index.port_taken(30080) && index.port_taken(30081));
        let b = json!({"spec":{"clusterIPs":["10.43.0.5"],"ports":[{"port":80}]}});
        index.follow(EventType::Modified, &b, Some(&a));
        assert!(!index.ip_taken(&"fd00:43::5".parse().unwrap()));
        assert!(index.ip_taken(&"10.43.0.5".parse().unwrap()));
        assert!(!index.port_taken(30080) && !index.port_taken(30081));
        let c = json!({"spec":{"clusterIPs":["10.43.0.6"]}});
        index.follow(EventType::Deleted, &c, Some(&b));
        assert!(
            !index.ip_taken(&"10.43.0.5".parse().unwrap()),
            "what the stored version held"
        );
    }
}
