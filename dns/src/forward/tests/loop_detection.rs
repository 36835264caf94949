//! Upstreams that lead back to us.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::super::ForwardError;
use super::*;

#[test]
fn own_address_is_filtered_from_the_upstreams() {
    let forwarder = Forwarder::new(ForwardOptions {
        upstreams: vec!["169.254.20.10:53".parse().unwrap(), "10.0.0.10:53".parse().unwrap()],
        own_addresses: vec!["169.254.20.10".parse().unwrap()],
        ..ForwardOptions::default()
    })
    .unwrap();

    assert_eq!(forwarder.upstreams(), ["10.0.0.10:53".parse().unwrap()]);
}

#[test]
fn new_fails_when_only_our_own_addresses_are_left() {
    let error = Forwarder::new(ForwardOptions {
        upstreams: vec!["169.254.20.10:53".parse().unwrap()],
        own_addresses: vec!["169.254.20.10".parse().unwrap()],
        ..ForwardOptions::default()
    })
    .err()
    .expect("no upstream left");

    assert!(matches!(&error, ForwardError::NoUpstreams { dropped } if dropped.len() == 1));
    let message = error.to_string();
    assert!(
        message.contains("169.254.20.10:53 would forward back to this server"),
        "{message}"
    );
    assert!(message.contains("configure an upstream"), "{message}");
}

#[test]
fn new_fails_without_upstreams() {
    let error = Forwarder::new(ForwardOptions::default()).err().expect("no upstream");

    assert!(error.to_string().contains("none is configured"), "{error}");
}

#[tokio::test]
async fn upstream_that_forwards_our_probe_back_is_marked_looping() {
    // "Our server": a plain thread that, like the real one, asks
    // `is_loop_probe` before forwarding and answers REFUSED to probes.
    let our_server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let our_addr = our_server.local_addr().unwrap();
    // The looping upstream passes every query to our server and relays the
    // answer back; the good one answers from its zone.
    let looping = FakeUpstream::start(move |query, _| relay(our_addr, query).into_iter().collect());
    let good = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[looping.addr, good.addr]);
    let forwarder = Arc::new(forwarder);
    let server = OurServer::start(our_server, Arc::clone(&forwarder));

    forwarder.check_loops().await;

    assert_eq!(server.probes_refused(), 1);
    assert_eq!(forwarder.stats().looping_upstreams, [looping.addr]);
    assert_eq!(forwarder.upstreams(), [good.addr]);
    // From now on queries go to the good upstream only.
    let reply = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(looping.queries(Transport::Udp), 1);
    assert_eq!(good.queries(Transport::Udp), 2);
}

#[tokio::test]
async fn ordinary_queries_and_unknown_probe_names_are_no_loop_probes() {
    let good = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[good.addr]);

    forwarder.check_loops().await;

    assert!(!forwarder.is_loop_probe(&bytes(&query("www.example.com.", RecordType::A))));
    let stranger = query("0123456789abcdef.netlet-loop-probe.", RecordType::HINFO);
    assert!(!forwarder.is_loop_probe(&bytes(&stranger)));
    assert!(!forwarder.is_loop_probe(b"garbage"));
    assert!(forwarder.stats().looping_upstreams.is_empty());
    assert_eq!(forwarder.upstreams(), [good.addr]);
}

/// Sends `query` to `to` and returns the reply, if one comes within 2 s.
fn relay(to: SocketAddr, query: &Message) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(&bytes(query), to).ok()?;
    let mut buffer = vec![0u8; 65535];
    let length = socket.recv(&mut buffer).ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// The DNS server side of the loop test, on a plain thread.
struct OurServer {
    addr: SocketAddr,
    refused: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OurServer {
    fn start(socket: UdpSocket, forwarder: Arc<Forwarder>) -> OurServer {
        let addr = socket.local_addr().unwrap();
        let refused = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (refused, stop) = (Arc::clone(&refused), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buffer = vec![0u8; 65535];
                while let Ok((length, peer)) = socket.recv_from(&mut buffer) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let raw = &buffer[..length];
                    let Ok(query) = Message::from_vec(raw) else {
                        continue;
                    };
                    let mut reply = reply_to(&query);
                    reply.metadata.response_code = if forwarder.is_loop_probe(raw) {
                        *refused.lock().unwrap() += 1;
                        ResponseCode::Refused
                    } else {
                        ResponseCode::ServFail
                    };
                    let _ = socket.send_to(&bytes(&reply), peer);
                }
            })
        };
        OurServer {
            addr,
            refused,
            stop,
            thread: Some(thread),
        }
    }

    fn probes_refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.send_to(&[0], self.addr));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
