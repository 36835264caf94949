//! A minimal nf_tables writer over netlink (`NETLINK_NETFILTER`,
//! subsystem `NFNL_SUBSYS_NFTABLES`): enough to replace one table holding
//! one NAT base chain atomically, delete it, and read back whether it is
//! there and how many rules it has. netlet is a single binary, so it speaks
//! the kernel's protocol itself rather than running `nft`.
//!
//! The layout follows `include/uapi/linux/netfilter/nfnetlink.h` and
//! `nf_tables.h`: every message is a `nlmsghdr` with type
//! `(NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_*`, a 4-byte `nfgenmsg` (family,
//! version, resource id), then attributes. Writes go in a batch between
//! `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END`, which the kernel
//! applies as one transaction: all or nothing. Integer attributes are
//! big-endian; nested attributes carry `NLA_F_NESTED`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

// nfnetlink.h
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10; // NLMSG_MIN_TYPE
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;

// netlink.h
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

// nf_tables.h: enum nf_tables_msg_types
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;

// enum nft_table_attributes
const NFTA_TABLE_NAME: u16 = 1;
// enum nft_chain_attributes
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
// enum nft_hook_attributes
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
// enum nft_list_attributes
const NFTA_LIST_ELEM: u16 = 1;
// enum nft_expr_attributes
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_data_attributes
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_verdict_attributes
const NFTA_VERDICT_CODE: u16 = 1;
// enum nft_meta_attributes
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
// enum nft_payload_attributes
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
// enum nft_bitwise_attributes
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
// enum nft_cmp_attributes
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
// enum nft_immediate_attributes
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

// enum nft_registers: the verdict register, then four 16-byte registers.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
// enum nft_meta_keys
const NFT_META_NFPROTO: u32 = 15;
// enum nft_payload_bases
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
// enum nft_cmp_ops
const NFT_CMP_EQ: u32 = 0;

// netfilter.h
/// `NFPROTO_INET`: a table for both IPv4 and IPv6.
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;
const NF_ACCEPT: u32 = 1;
const NF_INET_POST_ROUTING: u32 = 4;
/// `NF_IP_PRI_NAT_SRC`: where source NAT chains hook.
pub const PRIORITY_SRCNAT: i32 = 100;

const ENOENT: i32 = 2;
const EPROTONOSUPPORT: i32 = 93;
const EOPNOTSUPP: i32 = 95;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nf_tables: {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel refused a message; `errno` is positive.
    #[error("nf_tables refused to {step}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { step: String, errno: i32 },
    #[error("nf_tables did not answer {step} within {timeout:?}")]
    NoAnswer { step: String, timeout: Duration },
}

impl NftError {
    /// Whether this kernel cannot do it at all: no nf_tables (or a piece
    /// of it, such as the nat chain type or the masq expression).
    pub fn is_unsupported(&self) -> bool {
        match self {
            NftError::Io { source, .. } => source.raw_os_error() == Some(EPROTONOSUPPORT),
            NftError::Kernel { errno, .. } => *errno == EOPNOTSUPP || *errno == EPROTONOSUPPORT,
            NftError::NoAnswer { .. } => false,
        }
    }
}

/// One expression of a rule, as `nft --debug=netlink` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load <key> => reg 1`
    Meta { key: u32 },
    /// `payload load <len>b @ network header + <offset> => reg 1`
    Payload { offset: u32, len: u32 },
    /// `bitwise reg 1 = (reg 1 & <mask>) ^ 0`
    Bitwise { mask: Vec<u8> },
    /// `cmp eq reg 1 <data>`
    CmpEq { data: Vec<u8> },
    /// `immediate reg 0 accept`
    Accept,
    /// `masq`
    Masquerade,
}

impl Expr {
    /// `meta nfproto <family>`: what `ip saddr` implies in an inet table.
    pub fn nfproto(ip: &IpAddr) -> [Expr; 2] {
        let proto = if ip.is_ipv4() { NFPROTO_IPV4 } else { NFPROTO_IPV6 };
        [Expr::Meta { key: NFT_META_NFPROTO }, Expr::CmpEq { data: vec![proto] }]
    }

    /// `ip saddr <network>/<prefix>` (or daddr, or the IPv6 ones); nothing
    /// for /0, no mask for a full-length prefix. Call after
    /// [`Expr::nfproto`] of the same family.
    pub fn address_in(source: bool, network: IpAddr, prefix: u8) -> Vec<Expr> {
        let (bytes, offset): (Vec<u8>, u32) = match network {
            // struct iphdr: saddr at 12, daddr at 16.
            IpAddr::V4(a) => (a.octets().to_vec(), if source { 12 } else { 16 }),
            // struct ipv6hdr: saddr at 8, daddr at 24.
            IpAddr::V6(a) => (a.octets().to_vec(), if source { 8 } else { 24 }),
        };
        if prefix == 0 {
            return Vec::new();
        }
        let bits = bytes.len() * 8;
        let prefix = usize::from(prefix).min(bits);
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let left = prefix.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - left)) as u8
            })
            .collect();
        let data: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        let mut out = vec![Expr::Payload {
            offset,
            len: bytes.len() as u32,
        }];
        if prefix < bits {
            out.push(Expr::Bitwise { mask });
        }
        out.push(Expr::CmpEq { data });
        out
    }
}

/// Appends netlink attributes to a message.
struct Attrs<'a>(&'a mut Vec<u8>);

impl Attrs<'_> {
    fn put(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        pad(self.0);
    }

    fn u32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string, as `NLA_STRING` attributes are sent.
    fn str(&mut self, ty: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(ty, &b);
    }

    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        f(&mut Attrs(self.0));
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn value(&mut self, ty: u16, data: &[u8]) {
        self.nest(ty, |a| a.put(NFTA_DATA_VALUE, data));
    }

    fn expr(&mut self, e: &Expr) {
        self.nest(NFTA_LIST_ELEM, |a| {
            let name = match e {
                Expr::Meta { .. } => "meta",
                Expr::Payload { .. } => "payload",
                Expr::Bitwise { .. } => "bitwise",
                Expr::CmpEq { .. } => "cmp",
                Expr::Accept => "immediate",
                Expr::Masquerade => "masq",
            };
            a.str(NFTA_EXPR_NAME, name);
            match e {
                Expr::Meta { key } => a.nest(NFTA_EXPR_DATA, |d| {
                    d.u32(NFTA_META_DREG, NFT_REG_1);
                    d.u32(NFTA_META_KEY, *key);
                }),
                Expr::Payload { offset, len } => a.nest(NFTA_EXPR_DATA, |d| {
                    d.u32(NFTA_PAYLOAD_DREG, NFT_REG_1);
                    d.u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
                    d.u32(NFTA_PAYLOAD_OFFSET, *offset);
                    d.u32(NFTA_PAYLOAD_LEN, *len);
                }),
                Expr::Bitwise { mask } => a.nest(NFTA_EXPR_DATA, |d| {
                    d.u32(NFTA_BITWISE_SREG, NFT_REG_1);
                    d.u32(NFTA_BITWISE_DREG, NFT_REG_1);
                    d.u32(NFTA_BITWISE_LEN, mask.len() as u32);
                    d.value(NFTA_BITWISE_MASK, mask);
                    d.value(NFTA_BITWISE_XOR, &vec![0; mask.len()]);
                }),
                Expr::CmpEq { data } => a.nest(NFTA_EXPR_DATA, |d| {
                    d.u32(NFTA_CMP_SREG, NFT_REG_1);
                    d.u32(NFTA_CMP_OP, NFT_CMP_EQ);
                    d.value(NFTA_CMP_DATA, data);
                }),
                Expr::Accept => a.nest(NFTA_EXPR_DATA, |d| {
                    d.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                    d.nest(NFTA_IMMEDIATE_DATA, |v| {
                        v.nest(NFTA_DATA_VERDICT, |c| c.u32(NFTA_VERDICT_CODE, NF_ACCEPT))
                    });
                }),
                // Plain `masquerade`: no flags, no port range.
                Expr::Masquerade => {}
            }
        });
    }
}

fn pad(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// A batch of nf_tables messages: one transaction.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Sequence numbers and steps of the messages that get an answer.
    acked: Vec<(u32, String)>,
}

impl Batch {
    /// A batch whose messages are numbered from `seq`.
    pub fn new(seq: u32) -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq,
            acked: Vec::new(),
        };
        b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, |_| {});
        b
    }

    /// One message: `nlmsghdr`, `nfgenmsg`, attributes.
    fn header(&mut self, ty: u16, flags: u16, family: u8, attrs: impl FnOnce(&mut Attrs)) -> u32 {
        let start = self.buf.len();
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.buf.extend_from_slice(&[0; 4]); // nlmsg_len, filled below
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
                                                         // struct nfgenmsg; batch messages name the subsystem in res_id.
        let batch = ty == NFNL_MSG_BATCH_BEGIN || ty == NFNL_MSG_BATCH_END;
        let res_id = if batch { NFNL_SUBSYS_NFTABLES } else { 0 };
        self.buf.extend_from_slice(&[family, NFNETLINK_V0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        attrs(&mut Attrs(&mut self.buf));
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        seq
    }

    fn msg(&mut self, kind: u16, flags: u16, family: u8, step: String, attrs: impl FnOnce(&mut Attrs)) {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        let seq = self.header(ty, NLM_F_REQUEST | NLM_F_ACK | flags, family, attrs);
        self.acked.push((seq, step));
    }

    /// `add table <family> <name>` (no error when it exists).
    pub fn add_table(&mut self, family: u8, name: &str) -> &mut Self {
        self.msg(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            family,
            format!("add table {name}"),
            |a| a.str(NFTA_TABLE_NAME, name),
        );
        self
    }

    /// `delete table <family> <name>`, with all its chains and rules. Fails
    /// when the table does not exist: add it first in the same batch.
    pub fn delete_table(&mut self, family: u8, name: &str) -> &mut Self {
        self.msg(NFT_MSG_DELTABLE, 0, family, format!("delete table {name}"), |a| {
            a.str(NFTA_TABLE_NAME, name)
        });
        self
    }

    /// `add chain <family> <table> <name> { type nat hook postrouting
    /// priority <priority>; policy accept; }`
    pub fn add_nat_postrouting_chain(&mut self, family: u8, table: &str, name: &str, priority: i32) -> &mut Self {
        self.msg(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            format!("add chain {name}"),
            |a| {
                a.str(NFTA_CHAIN_TABLE, table);
                a.str(NFTA_CHAIN_NAME, name);
                a.nest(NFTA_CHAIN_HOOK, |h| {
                    h.u32(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING);
                    h.u32(NFTA_HOOK_PRIORITY, priority as u32);
                });
                a.u32(NFTA_CHAIN_POLICY, NF_ACCEPT);
                a.str(NFTA_CHAIN_TYPE, "nat");
            },
        );
        self
    }

    /// Appends a rule to a chain.
    pub fn add_rule(&mut self, family: u8, table: &str, chain: &str, exprs: &[Expr]) -> &mut Self {
        let step = format!("add a rule to chain {chain}");
        self.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family, step, |a| {
            a.str(NFTA_RULE_TABLE, table);
            a.str(NFTA_RULE_CHAIN, chain);
            a.nest(NFTA_RULE_EXPRESSIONS, |l| {
                for e in exprs {
                    l.expr(e);
                }
            });
        });
        self
    }

    /// The bytes to send, batch end included.
    pub fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>) {
        self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, |_| {});
        (self.buf, self.acked)
    }
}

/// A `NETLINK_NETFILTER` socket in the namespace it was opened in.
/// Blocking: use it from `spawn_blocking`.
pub struct NftSocket {
    fd: OwnedFd,
    seq: AtomicU32,
}

/// How long to wait for the kernel's answers.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

impl NftSocket {
    pub fn open() -> Result<NftSocket, NftError> {
        let io = |step| move |source| NftError::Io { step, source };
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
        if fd < 0 {
            return Err(io("open a netfilter netlink socket")(io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; bind(2) reads it only.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: addr is a valid sockaddr_nl of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) } < 0 {
            return Err(io("bind the netfilter netlink socket")(io::Error::last_os_error()));
        }
        let tv = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        let tv_len = std::mem::size_of::<libc::timeval>() as u32;
        // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                tv_len,
            )
        };
        if r < 0 {
            return Err(io("set the receive timeout")(io::Error::last_os_error()));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Ok(NftSocket {
            fd,
            seq: AtomicU32::new(seed),
        })
    }

    /// A batch numbered for this socket.
    pub fn batch(&self) -> Batch {
        Batch::new(self.seq.fetch_add(1 << 16, Ordering::Relaxed))
    }

    fn send(&self, bytes: &[u8]) -> Result<(), NftError> {
        // SAFETY: bytes is a valid buffer of its length; the kernel is the
        // default destination of an unconnected netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(NftError::Io {
                step: "send to nf_tables",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Reads one datagram's messages: (type, seq, payload after the header).
    fn recv(&self, buf: &mut [u8]) -> Result<Option<Vec<Answer>>, NftError> {
        // SAFETY: buf is a valid writable buffer of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                return Ok(None);
            }
            return Err(NftError::Io {
                step: "receive from nf_tables",
                source: e,
            });
        }
        Ok(Some(split_messages(&buf[..n as usize])))
    }

    /// Sends a batch; Ok once the kernel acknowledged every message, else
    /// the first refusal (the whole transaction is then rolled back).
    pub fn apply(&self, batch: Batch) -> Result<(), NftError> {
        let (bytes, mut pending) = batch.finish();
        self.send(&bytes)?;
        let mut first_error: Option<NftError> = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            let Some(messages) = self.recv(&mut buf)? else {
                return Err(first_error.unwrap_or_else(|| NftError::NoAnswer {
                    step: pending[0].1.clone(),
                    timeout: ANSWER_TIMEOUT,
                }));
            };
            for (ty, seq, payload) in messages {
                if ty != NLMSG_ERROR {
                    continue;
                }
                let errno = error_code(&payload);
                let Some(i) = pending.iter().position(|p| p.0 == seq) else {
                    // About the batch as a whole (e.g. no nf_tables in this
                    // kernel, refused at the batch's start): nothing else
                    // comes.
                    if errno != 0 {
                        return Err(first_error.unwrap_or(NftError::Kernel {
                            step: "apply the batch".to_string(),
                            errno,
                        }));
                    }
                    continue;
                };
                let step = pending.remove(i).1;
                if errno != 0 && first_error.is_none() {
                    first_error = Some(NftError::Kernel { step, errno });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether table `name` of `family` exists.
    pub fn table_exists(&self, family: u8, name: &str) -> Result<bool, NftError> {
        let mut b = Batch {
            buf: Vec::new(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            acked: Vec::new(),
        };
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
        let seq = b.header(ty, NLM_F_REQUEST | NLM_F_ACK, family, |a| a.str(NFTA_TABLE_NAME, name));
        self.send(&b.buf)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut found = false;
        loop {
            let Some(messages) = self.recv(&mut buf)? else {
                return Err(NftError::NoAnswer {
                    step: format!("look up table {name}"),
                    timeout: ANSWER_TIMEOUT,
                });
            };
            for (ty, s, payload) in messages {
                if s != seq {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    return match error_code(&payload) {
                        0 => Ok(found),
                        ENOENT => Ok(false),
                        errno => Err(NftError::Kernel {
                            step: format!("look up table {name}"),
                            errno,
                        }),
                    };
                }
                if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                    found = true;
                }
            }
        }
    }

    /// How many rules table `name` of `family` holds (0 when it is gone).
    pub fn rule_count(&self, family: u8, name: &str) -> Result<usize, NftError> {
        let mut b = Batch {
            buf: Vec::new(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            acked: Vec::new(),
        };
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE;
        let seq = b.header(ty, NLM_F_REQUEST | NLM_F_DUMP, family, |a| a.str(NFTA_RULE_TABLE, name));
        self.send(&b.buf)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut count = 0;
        loop {
            let Some(messages) = self.recv(&mut buf)? else {
                return Err(NftError::NoAnswer {
                    step: format!("list the rules of table {name}"),
                    timeout: ANSWER_TIMEOUT,
                });
            };
            for (ty, s, payload) in messages {
                if s != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(count),
                    NLMSG_ERROR => {
                        return match error_code(&payload) {
                            0 => Ok(count),
                            ENOENT => Ok(0),
                            errno => Err(NftError::Kernel {
                                step: format!("list the rules of table {name}"),
                                errno,
                            }),
                        }
                    }
                    t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => count += 1,
                    _ => {}
                }
            }
        }
    }
}

/// The positive errno of an `nlmsgerr` payload (0: an acknowledgement).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// One message of an answer: type, sequence number, payload after the
/// header.
type Answer = (u16, u32, Vec<u8>);

/// Splits a datagram into its messages.
fn split_messages(mut data: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        out.push((ty, seq, data[16..len].to_vec()));
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute as the uapi headers lay it out: `struct nlattr { u16
    /// nla_len; u16 nla_type; }` then the data, padded to 4 bytes.
    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(data);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(ty | 0x8000, &parts.concat())
    }

    /// `struct nlmsghdr` + `struct nfgenmsg`.
    fn header(len: usize, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Vec<u8> {
        let mut v = (len as u32).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(flags.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(0u32.to_ne_bytes());
        v.extend([family, 0]);
        v.extend(res_id.to_be_bytes());
        v
    }

    fn message(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body = attrs.concat();
        let mut v = header(20 + body.len(), ty, flags, seq, family, res_id);
        v.extend(body);
        v
    }

    #[test]
    fn a_batch_replacing_a_table_has_the_uapi_layout() {
        let mut b = Batch::new(100);
        b.add_table(NFPROTO_INET, "t")
            .delete_table(NFPROTO_INET, "t")
            .add_table(NFPROTO_INET, "t")
            .add_nat_postrouting_chain(NFPROTO_INET, "t", "post", 100)
            .add_rule(NFPROTO_INET, "t", "post", &[Expr::Masquerade]);
        let (bytes, acked) = b.finish();

        // type = NFNL_SUBSYS_NFTABLES (10) << 8 | NFT_MSG_*
        let (newtable, deltable, newchain, newrule) = (0x0a00, 0x0a02, 0x0a03, 0x0a06);
        // NLM_F_REQUEST 1 | NLM_F_ACK 4, + NLM_F_CREATE 0x400, + NLM_F_APPEND 0x800
        let table_name = attr(1, b"t\0"); // NFTA_TABLE_NAME
        let mut want = Vec::new();
        // NFNL_MSG_BATCH_BEGIN (NLMSG_MIN_TYPE 0x10), AF_UNSPEC, res_id NFNL_SUBSYS_NFTABLES.
        want.extend(message(0x10, 1, 100, 0, 10, &[]));
        want.extend(message(newtable, 0x405, 101, 1, 0, std::slice::from_ref(&table_name)));
        want.extend(message(deltable, 0x005, 102, 1, 0, std::slice::from_ref(&table_name)));
        want.extend(message(newtable, 0x405, 103, 1, 0, std::slice::from_ref(&table_name)));
        want.extend(message(
            newchain,
            0x405,
            104,
            1,
            0,
            &[
                attr(1, b"t\0"),    // NFTA_CHAIN_TABLE
                attr(3, b"post\0"), // NFTA_CHAIN_NAME
                nested(
                    4, // NFTA_CHAIN_HOOK
                    &[
                        attr(1, &4u32.to_be_bytes()),   // NFTA_HOOK_HOOKNUM = NF_INET_POST_ROUTING
                        attr(2, &100u32.to_be_bytes()), // NFTA_HOOK_PRIORITY
                    ],
                ),
                attr(5, &1u32.to_be_bytes()), // NFTA_CHAIN_POLICY = NF_ACCEPT
                attr(7, b"nat\0"),            // NFTA_CHAIN_TYPE
            ],
        ));
        want.extend(message(
            newrule,
            0xc05,
            105,
            1,
            0,
            &[
                attr(1, b"t\0"),                                // NFTA_RULE_TABLE
                attr(2, b"post\0"),                             // NFTA_RULE_CHAIN
                nested(4, &[nested(1, &[attr(1, b"masq\0")])]), // EXPRESSIONS > LIST_ELEM > EXPR_NAME
            ],
        ));
        want.extend(message(0x11, 1, 106, 0, 10, &[])); // NFNL_MSG_BATCH_END
        assert_eq!(bytes, want);
        let seqs: Vec<u32> = acked.iter().map(|a| a.0).collect();
        assert_eq!(seqs, [101, 102, 103, 104, 105]);
    }

    #[test]
    fn a_cidr_match_loads_masks_and_compares() {
        let ip: IpAddr = "10.42.0.0".parse().unwrap();
        let mut b = Batch::new(1);
        let mut exprs = Expr::nfproto(&ip).to_vec();
        exprs.extend(Expr::address_in(true, ip, 16));
        exprs.push(Expr::Accept);
        b.add_rule(NFPROTO_INET, "t", "c", &exprs);
        let (bytes, _) = b.finish();
        let u32be = |v: u32| v.to_be_bytes();
        let elem = |name: &[u8], data: Vec<Vec<u8>>| nested(1, &[attr(1, name), nested(2, &data)]);
        let list = nested(
            4,
            &[
                // meta load nfproto => reg 1
                elem(b"meta\0", vec![attr(1, &u32be(1)), attr(2, &u32be(15))]),
                // cmp eq reg 1 0x02 (NFPROTO_IPV4)
                elem(
                    b"cmp\0",
                    vec![attr(1, &u32be(1)), attr(2, &u32be(0)), nested(3, &[attr(1, &[2])])],
                ),
                // payload load 4b @ network header + 12 => reg 1
                elem(
                    b"payload\0",
                    vec![
                        attr(1, &u32be(1)),
                        attr(2, &u32be(1)),
                        attr(3, &u32be(12)),
                        attr(4, &u32be(4)),
                    ],
                ),
                // bitwise reg 1 = (reg 1 & 0xffff0000) ^ 0
                elem(
                    b"bitwise\0",
                    vec![
                        attr(1, &u32be(1)),
                        attr(2, &u32be(1)),
                        attr(3, &u32be(4)),
                        nested(4, &[attr(1, &[255, 255, 0, 0])]),
                        nested(5, &[attr(1, &[0, 0, 0, 0])]),
                    ],
                ),
                // cmp eq reg 1 10.42.0.0
                elem(
                    b"cmp\0",
                    vec![
                        attr(1, &u32be(1)),
                        attr(2, &u32be(0)),
                        nested(3, &[attr(1, &[10, 42, 0, 0])]),
                    ],
                ),
                // immediate reg 0 accept
                elem(
                    b"immediate\0",
                    vec![attr(1, &u32be(0)), nested(2, &[nested(2, &[attr(1, &u32be(1))])])],
                ),
            ],
        );
        let rule = message(0x0a06, 0xc05, 2, 1, 0, &[attr(1, b"t\0"), attr(2, b"c\0"), list]);
        assert_eq!(&bytes[20..bytes.len() - 20], &rule[..]);
    }

    #[test]
    fn ipv6_prefixes_mask_partial_bytes_and_full_ones_skip_the_mask() {
        let ip: IpAddr = "fd00:42::".parse().unwrap();
        let e = Expr::address_in(false, ip, 60);
        assert_eq!(e[0], Expr::Payload { offset: 24, len: 16 });
        let Expr::Bitwise { mask } = &e[1] else { panic!("{e:?}") };
        assert_eq!(
            &mask[..],
            &[255, 255, 255, 255, 255, 255, 255, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let host = Expr::address_in(true, "192.0.2.1".parse().unwrap(), 32);
        assert_eq!(host.len(), 2, "no bitwise for a /32: {host:?}");
        assert!(Expr::address_in(true, "0.0.0.0".parse().unwrap(), 0).is_empty());
    }

    #[test]
    fn answers_split_into_messages() {
        let mut d = header(36, NLMSG_ERROR, 0, 7, 0, 0);
        d.truncate(16);
        d.extend((-2i32).to_ne_bytes());
        d.extend([0u8; 16]);
        let m = split_messages(&d);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].0, m[0].1, error_code(&m[0].2)), (NLMSG_ERROR, 7, 2));
    }
}
