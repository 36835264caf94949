//! The whole request path on any bytes: `Handler::handle` over UDP and TCP,
//! with the zone synced and not yet synced, checked as the serving loop
//! would use its decision.

#![no_main]

use dns::Transport;
use libfuzzer_sys::fuzz_target;
use netlet_fuzz::{check_handle, example_org, handlers};

fuzz_target!(|data: &[u8]| {
    for handler in handlers() {
        for transport in [Transport::Udp, Transport::Tcp] {
            check_handle(handler, data, transport, example_org());
        }
    }
});
