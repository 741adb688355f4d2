//! The serde message formats: `Json`, `MsgPack`, `Postcard`.
//!
//! Exact float round trips (a fixed list and property tests), NaN refused by
//! JSON with an encode error, MessagePack structs as maps with field names
//! (what Python's `msgpack` turns into a dict), compact postcard bytes, and
//! every way a payload can be wrong ending as `Error::Decode` with a source.
//! Declared lengths from untrusted bytes are covered by
//! `tests/untrusted_lengths.rs`.

use std::collections::BTreeMap;

use bytes::BytesMut;
use enchufe_framing::{Decode, Encode, Error, Json, MsgPack, Postcard, Transport};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Persona {
    nombre: String,
    mail: String,
    edad: u8,
    altura: f64,
    tags: Vec<String>,
    jefe: Option<Box<Persona>>,
    forma: Forma,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Forma {
    Nada,
    Circulo { radio: f64 },
    Par(i64, i64),
}

fn juan() -> Persona {
    Persona {
        nombre: "Juan Pérez 🦀".into(),
        mail: "jp@algo.com".into(),
        edad: 42,
        altura: 1.779,
        tags: vec!["ñandú".into(), String::new()],
        jefe: Some(Box::new(Persona {
            nombre: "Ana".into(),
            mail: "ana@algo.com".into(),
            edad: 51,
            altura: 1.62,
            tags: vec![],
            jefe: None,
            forma: Forma::Nada,
        })),
        forma: Forma::Circulo { radio: 0.1 },
    }
}

fn round_trip<M: Encode + Decode>(message: M) -> M {
    let frame = message.encode().expect("encodes");
    M::decode(BytesMut::from(&frame[..])).expect("decodes")
}

/// Floats where a parser that is not exact goes wrong, and the edges.
const HARD_F64: [f64; 9] = [
    9.141592653589793, // a parser that is not exact gives back ...791
    0.1 + 0.2,
    1.779,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324, // the smallest subnormal
    -0.0,
    2.225073858507201e-308,
    123_456_789.123_456_79,
];

#[test]
fn json_floats_round_trip_exactly() {
    for x in HARD_F64 {
        let Json(back) = round_trip(Json(x));
        assert_eq!(back.to_bits(), x.to_bits(), "{x:?} came back as {back:?}");
    }
    let Json(p) = round_trip(Json(juan()));
    assert_eq!(p, juan());
}

#[test]
fn json_refuses_nan_and_infinity_when_encoding() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = Json(bad).encode().expect_err("JSON cannot hold it");
        let Error::Encode(source) = &err else {
            panic!("{bad}: expected Error::Encode, got {err:?}");
        };
        assert!(
            source.to_string().contains("JSON has no NaN or infinity"),
            "{source}"
        );
        assert!(!err.is_fatal(), "one message failing keeps the stream");
    }
    // Nested, by reference, and in an f32: the same.
    let mut p = juan();
    p.jefe.as_mut().unwrap().forma = Forma::Circulo { radio: f64::NAN };
    assert!(matches!((&Json(p)).encode(), Err(Error::Encode(_))));
    assert!(matches!(
        Json(vec![1.0f32, f32::NEG_INFINITY]).encode(),
        Err(Error::Encode(_))
    ));
}

#[test]
fn binary_formats_carry_nan_and_infinity() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
        let MsgPack(m) = round_trip(MsgPack(x));
        let Postcard(p) = round_trip(Postcard(x));
        assert_eq!((m.to_bits(), p.to_bits()), (x.to_bits(), x.to_bits()));
    }
}

#[test]
fn msgpack_writes_structs_as_maps_with_field_names() {
    #[derive(Serialize)]
    struct Persona {
        nombre: &'static str,
        edad: u8,
    }
    let frame = MsgPack(Persona {
        nombre: "Juan",
        edad: 30,
    })
    .encode()
    .unwrap();
    // fixmap(2), fixstr "nombre", fixstr "Juan", fixstr "edad", 30.
    assert_eq!(&frame[..], b"\x82\xa6nombre\xa4Juan\xa4edad\x1e");

    // The way a Python dict arrives: fields by name, in any order.
    let mut dict = BTreeMap::new();
    dict.insert("mail", "jp@algo.com");
    dict.insert("nombre", "Juan");
    #[derive(Deserialize, PartialEq, Debug)]
    struct Contacto {
        nombre: String,
        mail: String,
    }
    let frame = MsgPack(&dict).encode().unwrap();
    let MsgPack(c) = MsgPack::<Contacto>::decode(frame[..].into()).unwrap();
    assert_eq!(c.nombre, "Juan");
    assert_eq!(c.mail, "jp@algo.com");

    // Enums: a unit variant is its name, the others a one-entry map.
    assert_eq!(&MsgPack(Forma::Nada).encode().unwrap()[..], b"\xa4Nada");
    assert_eq!(
        &MsgPack(Forma::Par(1, 2)).encode().unwrap()[..],
        b"\x81\xa3Par\x92\x01\x02"
    );
    let MsgPack(p) = round_trip(MsgPack(juan()));
    assert_eq!(p, juan());
}

#[test]
fn postcard_is_compact_and_round_trips() {
    let Postcard(p) = round_trip(Postcard(juan()));
    assert_eq!(p, juan());
    let postcard = Postcard(juan()).encode().unwrap().len();
    let msgpack = MsgPack(juan()).encode().unwrap().len();
    let json = Json(juan()).encode().unwrap().len();
    assert!(
        postcard < msgpack && msgpack < json,
        "postcard {postcard} B, msgpack {msgpack} B, json {json} B"
    );
    // Integers are varints: 300 takes two bytes.
    assert_eq!(&Postcard(300u32).encode().unwrap()[..], b"\xac\x02");
}

/// Nesting is bounded at 128 levels in every format, counted by enchufe for
/// postcard (which has no limit of its own); values within it round-trip.
#[test]
fn nesting_is_bounded_at_128_levels_in_every_format() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Tree(Vec<Tree>);
    fn tree(levels: usize) -> Tree {
        (1..levels).fold(Tree(vec![]), |inner, _| Tree(vec![inner]))
    }
    let ok = tree(100);
    let Postcard(p) = round_trip(Postcard(tree(100)));
    let MsgPack(m) = round_trip(MsgPack(tree(100)));
    let Json(j) = round_trip(Json(tree(100)));
    assert!(p == ok && m == ok && j == ok);

    let deep = tree(200);
    let postcard = Postcard::<Tree>::decode(Postcard(&deep).encode().unwrap()[..].into()).map(drop);
    let msgpack = MsgPack::<Tree>::decode(MsgPack(&deep).encode().unwrap()[..].into()).map(drop);
    let json = Json::<Tree>::decode(Json(&deep).encode().unwrap()[..].into()).map(drop);
    for (what, result, says) in [
        ("postcard", postcard, "nest deeper than 128 levels"),
        ("msgpack", msgpack, "depth limit exceeded"),
        ("json", json, "recursion limit exceeded"),
    ] {
        match result {
            Err(Error::Decode(e)) => assert!(e.to_string().contains(says), "{what}: {e}"),
            other => panic!("{what}: expected a decode error, got {other:?}"),
        }
    }
}

/// Every way a payload can be wrong is `Error::Decode` with the format's
/// error as its source, and not fatal to the stream.
#[test]
fn bad_payloads_are_decode_errors_with_a_source() {
    fn check<M: Decode + std::fmt::Debug>(what: &str, payload: &[u8], says: &str) {
        let err = M::decode(BytesMut::from(payload)).expect_err(what);
        let Error::Decode(source) = &err else {
            panic!("{what}: expected Error::Decode, got {err:?}");
        };
        assert!(
            source.to_string().contains(says),
            "{what}: source says {source}, expected it to mention {says:?}"
        );
        assert!(std::error::Error::source(&err).is_some(), "{what}");
        println!("{what}: {err}");
        assert!(!err.is_fatal(), "{what}");
    }
    check::<Json<Persona>>("json: not json", b"hola", "expected");
    check::<Json<u8>>("json: null for a number", b"null", "invalid type");
    check::<Json<u8>>("json: trailing", b"1 2", "trailing");

    check::<MsgPack<Persona>>("msgpack: empty", b"", "");
    check::<MsgPack<u8>>(
        "msgpack: a string for a number",
        b"\xa1x",
        "wrong msgpack marker",
    );
    check::<MsgPack<u8>>("msgpack: trailing", b"\x01\x02", "1 bytes left");
    check::<MsgPack<String>>("msgpack: cut short", b"\xa5abc", "");
    check::<MsgPack<String>>("msgpack: bad utf-8", b"\xa1\xff", "");

    check::<Postcard<Persona>>("postcard: empty", b"", "");
    check::<Postcard<u8>>("postcard: trailing", b"\x01\x02", "1 bytes left");
    check::<Postcard<bool>>("postcard: not a bool", b"\x07", "");
    check::<Postcard<String>>("postcard: cut short", b"\x05abc", "");
    check::<Postcard<u32>>("postcard: varint overflow", b"\xff\xff\xff\xff\xff\x01", "");
}

#[tokio::test]
async fn every_format_goes_through_a_transport() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut tx, mut rx) = (Transport::new(a), Transport::new(b));
    tx.send_msg(Json(juan())).await.unwrap();
    tx.send_msg(MsgPack(juan())).await.unwrap();
    tx.send_msg(Postcard(juan())).await.unwrap();
    // A frame of the wrong format fails that message only.
    tx.send_msg("no soy postcard").await.unwrap();
    tx.send_msg(Postcard(7u8)).await.unwrap();

    let Json(j): Json<Persona> = rx.recv_msg().await.unwrap().unwrap();
    let MsgPack(m): MsgPack<Persona> = rx.recv_msg().await.unwrap().unwrap();
    let Postcard(p): Postcard<Persona> = rx.recv_msg().await.unwrap().unwrap();
    assert_eq!((j, m, p), (juan(), juan(), juan()));
    let bad = rx.recv_msg::<Postcard<Persona>>().await;
    assert!(matches!(bad, Err(Error::Decode(_))), "{bad:?}");
    let Postcard(seven): Postcard<u8> = rx.recv_msg().await.unwrap().unwrap();
    assert_eq!(seven, 7);
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2_000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x656e_6368_7566_6521);
    }
    config.failure_persistence = None;
    config
}

/// Any finite f64, with the bit patterns that decimal printing finds hard
/// (subnormals, huge exponents) as likely as the ordinary ones.
fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |x| x.is_finite()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_f64_round_trips_bit_for_bit(x in finite_f64()) {
        let Json(back) = round_trip(Json(x));
        prop_assert_eq!(back.to_bits(), x.to_bits(), "{:?} came back as {:?}", x, back);
    }

    #[test]
    fn json_f32_round_trips_bit_for_bit(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        prop_assume!(x.is_finite());
        let Json(back) = round_trip(Json(x));
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    #[test]
    fn binary_formats_round_trip_any_value(
        bits in any::<u64>(),
        n in any::<i64>(),
        text in ".{0,40}",
        list in proptest::collection::vec(any::<u32>(), 0..20),
    ) {
        let value = (f64::from_bits(bits), n, text, list);
        let MsgPack(m) = round_trip(MsgPack(value.clone()));
        let Postcard(p) = round_trip(Postcard(value.clone()));
        for back in [m, p] {
            prop_assert_eq!(back.0.to_bits(), value.0.to_bits());
            prop_assert_eq!((&back.1, &back.2, &back.3), (&value.1, &value.2, &value.3));
        }
    }
}
