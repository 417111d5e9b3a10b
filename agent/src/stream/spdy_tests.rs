use super::*;

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_dictionary_is_the_one_spdy_peers_agree_on() {
    // A zlib stream names its preset dictionary by Adler-32; Go's framer and this one must
    // agree, or the peer's first header block fails to inflate.
    let dict = dictionary();
    assert_eq!(dict.len(), 1423);
    assert_eq!(adler32(&dict), 0xe3c6_a7c2);
}

#[test]
fn header_blocks_round_trip_through_one_compression_stream_per_direction() {
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    let blocks = [
        headers(&[
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ]),
        headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
        headers(&[]),
    ];
    for block in &blocks {
        let wire = enc.encode(block);
        assert_eq!(&dec.decode(&wire).unwrap(), block);
    }
}

#[test]
fn header_names_are_sent_lowercase() {
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    let wire = enc.encode(&headers(&[("StreamType", "stdout")]));
    assert_eq!(
        dec.decode(&wire).unwrap(),
        headers(&[("streamtype", "stdout")])
    );
}

#[tokio::test]
async fn frames_round_trip() {
    let frames = [
        Frame::SynStream {
            id: 1,
            flags: 0,
            headers: headers(&[("streamtype", "stdin")]),
        },
        Frame::SynReply {
            id: 1,
            flags: 0,
            headers: Vec::new(),
        },
        Frame::Data {
            id: 1,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        },
        Frame::RstStream { id: 3, status: 5 },
        Frame::Ping(7),
        Frame::WindowUpdate { id: 1, delta: 1000 },
        Frame::GoAway {
            last_id: 3,
            status: 0,
        },
    ];
    let mut enc = HeaderEncoder::new();
    let wire: Vec<u8> = frames.iter().flat_map(|f| encode(f, &mut enc)).collect();
    let mut dec = HeaderDecoder::new();
    let mut r = &wire[..];
    for want in &frames {
        let got = read_frame(&mut r, &mut dec).await.unwrap().unwrap();
        assert_eq!(&got, want);
    }
    assert_eq!(read_frame(&mut r, &mut dec).await.unwrap(), None);
}
