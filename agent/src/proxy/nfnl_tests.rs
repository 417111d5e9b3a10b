use super::*;

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expr::Payload { base, offset, len }
}

fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        op: NFT_CMP_EQ,
        data: data.to_vec(),
    }
}

fn to(code: i32, chain: &str) -> Expr {
    Expr::Verdict {
        code,
        chain: chain.into(),
    }
}

/// Each row: the rule text and the expressions `nft --debug=netlink` shows for it.
#[test]
fn the_rule_shapes_of_service_and_endpoint_chains_encode_as_nft_does() {
    let rows: Vec<(&str, &str, Option<Vec<Expr>>)> =
        vec![
        (
            "masquerade check of a Service chain",
            "ip daddr 10.45.0.100 tcp dport 80 ip saddr != 10.44.0.0/15 jump mark-for-masquerade",
            Some(vec![
                payload(1, 16, 4),
                eq(&[10, 45, 0, 100]),
                Expr::MetaL4proto,
                eq(&[6]),
                payload(2, 2, 2),
                eq(&[0, 80]),
                payload(1, 12, 4),
                Expr::Mask {
                    mask: vec![255, 254, 0, 0],
                },
                Expr::Cmp {
                    op: NFT_CMP_NEQ,
                    data: vec![10, 44, 0, 0],
                },
                to(NFT_JUMP, "mark-for-masquerade"),
            ]),
        ),
        (
            "random pick",
            "numgen random mod 5 == 0 goto endpoint-X-default/s/tcp/http__10.44.0.1/8080",
            Some(vec![
                Expr::Numgen { modulus: 5 },
                eq(&[0, 0, 0, 0]),
                to(NFT_GOTO, "endpoint-X-default/s/tcp/http__10.44.0.1/8080"),
            ]),
        ),
        (
            "last pick",
            "goto endpoint-X",
            Some(vec![to(NFT_GOTO, "endpoint-X")]),
        ),
        (
            "plain jump",
            "jump mark-for-masquerade",
            Some(vec![to(NFT_JUMP, "mark-for-masquerade")]),
        ),
        (
            "hairpin mark",
            "ip saddr 10.44.0.1 jump mark-for-masquerade",
            Some(vec![
                payload(1, 12, 4),
                eq(&[10, 44, 0, 1]),
                to(NFT_JUMP, "mark-for-masquerade"),
            ]),
        ),
        (
            "udp dnat",
            "meta l4proto udp dnat to 10.44.0.1:53",
            Some(vec![
                Expr::MetaL4proto,
                eq(&[17]),
                Expr::Value {
                    reg: NFT_REG_1,
                    data: vec![10, 44, 0, 1],
                },
                Expr::Value {
                    reg: NFT_REG_2,
                    data: vec![0, 53],
                },
                Expr::Dnat,
            ]),
        ),
        ("affinity lookup", "ip saddr @affinity-X goto endpoint-X", None),
        ("sctp dnat", "meta l4proto sctp dnat to 10.44.0.1:53", None),
        ("drop", "drop", None),
        (
            "pod short-circuit",
            "ip saddr 10.44.0.0/15 goto service-X",
            Some(vec![
                payload(1, 12, 4),
                Expr::Mask {
                    mask: vec![255, 254, 0, 0],
                },
                eq(&[10, 44, 0, 0]),
                to(NFT_GOTO, "service-X"),
            ]),
        ),
        (
            "local source",
            "fib saddr type local jump mark-for-masquerade",
            Some(vec![
                Expr::FibSaddrType,
                eq(&2u32.to_ne_bytes()),
                to(NFT_JUMP, "mark-for-masquerade"),
            ]),
        ),
        ("anonymous set", "ip saddr != { 1.2.3.0/24 } drop", None),
    ];
    for (name, text, want) in rows {
        assert_eq!(rule(text), want, "{name}");
    }
    assert_eq!(
        commented_rule("goto service-X comment \"short-circuit pod traffic\""),
        Some((
            vec![to(NFT_GOTO, "service-X")],
            Some("short-circuit pod traffic")
        )),
    );
    assert_eq!(udata_comment("ab"), vec![0, 3, b'a', b'b', 0]);
}

#[test]
fn a_transaction_with_a_line_netlink_does_not_know_goes_to_nft_whole() {
    let mut tx = super::super::nft::Transaction::new("kybern");
    tx.add_chain("service-X", None);
    tx.flush_chain("service-X");
    tx.add_rule("service-X", "goto endpoint-X");
    tx.delete_chain("endpoint-Y");
    let (batch, count) = encode("kybern", tx.text(), 100).expect("all lines known");
    assert_eq!(count, 4, "one acknowledged message a command");
    let types: Vec<u16> = messages(&batch).iter().map(|(ty, _, _)| *ty).collect();
    assert_eq!(
        types,
        vec![0x10, 0xa03, 0xa08, 0xa06, 0xa05, 0x11],
        "batch begin, new chain, flush (delete rules), new rule, delete chain, batch end"
    );
    let seqs: Vec<u32> = messages(&batch).iter().map(|(_, _, seq)| *seq).collect();
    assert_eq!(seqs, vec![100, 101, 102, 103, 104, 105]);
    let acked: Vec<bool> = messages(&batch)
        .iter()
        .map(|(_, flags, _)| flags & NLM_F_ACK != 0)
        .collect();
    assert_eq!(
        acked,
        vec![false, false, false, false, true, false],
        "only the last command asks for an acknowledgement"
    );

    tx.add_set(
        "affinity-X",
        "type ipv4_addr ; flags dynamic,timeout ; timeout 10800s",
    );
    assert_eq!(encode("kybern", tx.text(), 100), None, "sets go to nft");
    assert_eq!(encode("other", "add chain ip kybern x\n", 1), None);
    assert_eq!(encode("kybern", "", 1), None, "nothing to send");
}

/// (type, flags, seq) of each message in a batch.
fn messages(batch: &[u8]) -> Vec<(u16, u16, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < batch.len() {
        let len = u32::from_ne_bytes(batch[at..at + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([batch[at + 4], batch[at + 5]]);
        let flags = u16::from_ne_bytes([batch[at + 6], batch[at + 7]]);
        let seq = u32::from_ne_bytes(batch[at + 8..at + 12].try_into().unwrap());
        out.push((ty, flags, seq));
        at += len;
    }
    out
}

#[test]
fn acknowledgements_carry_the_sequence_number_and_errno() {
    let mut datagram = Vec::new();
    for (seq, error) in [(7u32, 0i32), (8, -2)] {
        datagram.extend_from_slice(&36u32.to_ne_bytes());
        datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        datagram.extend_from_slice(&0u16.to_ne_bytes());
        datagram.extend_from_slice(&seq.to_ne_bytes());
        datagram.extend_from_slice(&0u32.to_ne_bytes());
        datagram.extend_from_slice(&error.to_ne_bytes());
        datagram.extend_from_slice(&[0; 16]);
    }
    assert_eq!(acks(&datagram), vec![(7, 0), (8, 2)]);
}

#[test]
fn elements_encode_their_key_parts_padded_like_nft() {
    let rows: Vec<(&str, &str, bool, Option<Elem>)> = vec![
        (
            "service-ips entry",
            "{ 10.45.0.1 . udp . 53 : goto service-X }",
            false,
            Some(Elem {
                key: vec![10, 45, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0],
                comment: None,
                verdict: Some((NFT_GOTO, Some("service-X".into()))),
            }),
        ),
        (
            "no-endpoint entry with a comment",
            "{ 10.45.0.1 . tcp . 80 comment \"default/x:http\" : goto reject-chain }",
            false,
            Some(Elem {
                key: vec![10, 45, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0],
                comment: Some("default/x:http".into()),
                verdict: Some((NFT_GOTO, Some("reject-chain".into()))),
            }),
        ),
        (
            "nodeport dropped",
            "{ sctp . 30080 comment \"default/x:s\" : drop }",
            false,
            Some(Elem {
                key: vec![132, 0, 0, 0, 0x75, 0x80, 0, 0],
                comment: Some("default/x:s".into()),
                verdict: Some((NF_DROP, None)),
            }),
        ),
        (
            "set member",
            "{ 10.45.7.7 }",
            false,
            Some(Elem {
                key: vec![10, 45, 7, 7],
                comment: None,
                verdict: None,
            }),
        ),
        (
            "deleted by key",
            "{ tcp . 30080 }",
            true,
            Some(Elem {
                key: vec![6, 0, 0, 0, 0x75, 0x80, 0, 0],
                comment: None,
                verdict: None,
            }),
        ),
        ("a range", "{ 10.45.0.0/16 }", false, None),
        ("a deletion with a value", "{ tcp . 1 : drop }", true, None),
        ("two elements", "{ 10.45.0.1, 10.45.0.2 }", false, None),
    ];
    for (name, text, delete, want) in rows {
        assert_eq!(element(text, delete), want, "{name}");
    }
}
