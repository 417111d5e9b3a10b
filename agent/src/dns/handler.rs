//! One DNS request in, one reply out: header rules (opcode, question count, EDNS), the
//! zone's answer, and the encoding within the size the client can take. No sockets here.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::ProtoError;

use super::zone::{Answer, Zone};

/// The EDNS payload size this server advertises and the most it sends over UDP (the DNS
/// flag day 2020 value).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;
/// The UDP payload limit without EDNS (RFC 1035).
pub(crate) const CLASSIC_UDP: u16 = 512;

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this reply.
    Reply(Message),
    /// Not ours: forward the request upstream and relay the reply.
    Forward(Message),
    /// An ExternalName CNAME: resolve `target` (zone or upstream) and append its records.
    Chase(Box<Chase>),
    /// Not even a DNS header: drop it.
    Drop,
}

/// An ExternalName reply waiting for its target's records.
#[derive(Debug)]
pub(crate) struct Chase {
    pub(crate) reply: Message,
    pub(crate) target: Name,
    pub(crate) request: Message,
}

/// Decides the reply to `bytes`, and the most a UDP reply to it may carry.
pub(crate) fn handle(zone: &Zone, bytes: &[u8]) -> (Outcome, usize) {
    let request = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => {
            // A header we can read gets FORMERR; anything shorter, or a response, is dropped.
            if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
                return (Outcome::Drop, 0);
            }
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return (Outcome::Reply(reply), usize::from(CLASSIC_UDP));
        }
    };
    let limit = udp_limit(request.edns.as_ref());
    (answer(zone, request), limit)
}

/// Decides the reply to a decoded request.
pub(crate) fn answer(zone: &Zone, request: Message) -> Outcome {
    if request.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let mut reply = response_to(&request);
    if let Some(edns) = &request.edns {
        if edns.version() > 0 {
            reply.metadata.response_code = ResponseCode::BADVERS;
            return Outcome::Reply(reply);
        }
    }
    if request.metadata.op_code != OpCode::Query {
        reply.metadata.response_code = ResponseCode::NotImp;
        return Outcome::Reply(reply);
    }
    if request.queries.len() != 1 {
        reply.metadata.response_code = ResponseCode::FormErr;
        return Outcome::Reply(reply);
    }
    let query = &request.queries[0];
    reply.add_query(query.clone());
    match zone.lookup(query.name(), query.query_type()) {
        Answer::Forward => Outcome::Forward(request),
        Answer::Records {
            rcode,
            answers,
            additionals,
        } => {
            reply.metadata.authoritative = true;
            reply.metadata.response_code = rcode;
            if answers.is_empty() {
                reply.add_authority(zone.authority());
            }
            reply.insert_answers(answers);
            reply.insert_additionals(additionals);
            Outcome::Reply(reply)
        }
        Answer::Cname {
            record,
            target,
            chase,
        } => {
            reply.metadata.authoritative = true;
            reply.add_answer(*record);
            if chase {
                Outcome::Chase(Box::new(Chase {
                    reply,
                    target: *target,
                    request,
                }))
            } else {
                Outcome::Reply(reply)
            }
        }
    }
}

/// The reply's skeleton: id, opcode, RD echoed, RA (this server recurses), our EDNS when
/// the request had EDNS.
pub(crate) fn response_to(request: &Message) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        edns.set_version(0);
        reply.set_edns(edns);
    }
    reply
}

/// Appends the records found for an ExternalName's target to its CNAME reply; the rcode is
/// the target's (NXDOMAIN for a target that does not exist, as CoreDNS relays it).
pub(crate) fn append_chase(reply: &mut Message, rcode: ResponseCode, answers: Vec<Record>) {
    reply.metadata.response_code = rcode;
    // After the CNAME already there (`insert_answers` would panic on a non-empty section).
    reply.answers.extend(answers);
}

/// The question to ask about an ExternalName's target.
pub(crate) fn chase_query(request: &Message, target: Name) -> Message {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    let qtype = request.queries[0].query_type();
    q.add_query(Query::query(target, qtype));
    q
}

/// The most a UDP reply may carry for this request: its EDNS payload (at least 512, at most
/// ours), or 512 without EDNS.
pub(crate) fn udp_limit(request_edns: Option<&Edns>) -> usize {
    match request_edns {
        Some(edns) => usize::from(edns.max_payload().clamp(CLASSIC_UDP, EDNS_PAYLOAD)),
        None => usize::from(CLASSIC_UDP),
    }
}

/// Encodes a reply; over `limit` bytes it becomes the question alone with TC set, so the
/// client asks again over TCP.
pub(crate) fn encode(reply: &Message, limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::from(CLASSIC_UDP));
    encode_into(reply, limit, &mut out);
    out
}

/// [`encode`] into a buffer the caller keeps between replies (no allocation once it has
/// grown to the largest reply).
pub(crate) fn encode_into(reply: &Message, limit: usize, out: &mut Vec<u8>) {
    out.clear();
    if emit(reply, out).is_err() {
        *out = servfail(reply);
        return;
    }
    if out.len() > limit {
        out.clear();
        if emit(&reply.truncate(), out).is_err() {
            *out = servfail(reply);
        }
    }
}

fn emit(message: &Message, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    message.emit(&mut BinEncoder::new(out))
}

fn servfail(reply: &Message) -> Vec<u8> {
    let mut m = Message::error_msg(
        reply.metadata.id,
        reply.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.add_queries(reply.queries.iter().cloned());
    m.to_bytes().unwrap_or_default()
}
