//! A user program that names every enchufe type through the root crate.
//!
//! Nothing here is imported from `enchufe::server`, `enchufe::client`, the
//! inner crates or `bytes`: if a re-export at the root goes missing (the
//! message types, `Bytes`/`BytesMut` for a codec of one's own, `ErrorCode`,
//! the configs told apart by name), this file stops compiling. It also runs:
//! a multiplexed server and client exchange MessagePack, postcard and a
//! hand-written codec, and a failing handler arrives as `ErrorCode::Handler`.

use std::time::Duration;

use enchufe::{
    handler_fn, Bytes, BytesMut, Client, ClientConfig, Decode, Encode, ErrorCode, FramingConfig,
    Json, MsgPack, PeerConfig, Postcard, Profile, Raw, Server, ServerConfig, Text, Transport,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Persona {
    nombre: String,
    mail: String,
}

/// A codec of the user's own: a one-byte tag and a big-endian u32, written
/// with nothing but the re-exported buffers.
#[derive(Debug, PartialEq)]
struct Tagged(u8, u32);

impl Encode for Tagged {
    fn encode(self) -> enchufe::framing::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(5);
        buf.extend_from_slice(&[self.0]);
        buf.extend_from_slice(&self.1.to_be_bytes());
        Ok(buf.freeze())
    }
}

impl Decode for Tagged {
    fn decode(frame: BytesMut) -> enchufe::framing::Result<Self> {
        match frame[..] {
            [tag, a, b, c, d] => Ok(Tagged(tag, u32::from_be_bytes([a, b, c, d]))),
            _ => Err(enchufe::framing::Error::Decode(
                format!("a Tagged is 5 bytes, not {}", frame.len()).into(),
            )),
        }
    }
}

#[tokio::test]
async fn a_program_names_everything_from_the_root() {
    let server = Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(ServerConfig::default().profile(Profile::Multiplexed))
        .serve(handler_fn(
            |MsgPack(p): MsgPack<Persona>, _conn| async move {
                if p.mail.contains('@') {
                    Ok(Some(MsgPack(Persona {
                        nombre: p.nombre.to_uppercase(),
                        ..p
                    })))
                } else {
                    Err(format!("{} has no valid mail", p.nombre))
                }
            },
        ));
    let client = Client::connect_with(
        server.local_addr(),
        ClientConfig::default()
            .profile(Profile::Multiplexed)
            .request_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();

    let juan = Persona {
        nombre: "Juan Pérez".into(),
        mail: "jp@algo.com".into(),
    };
    let MsgPack(back): MsgPack<Persona> = client.request(MsgPack(&juan)).await.unwrap();
    assert_eq!(back.nombre, "JUAN PÉREZ");

    let bad = Persona {
        nombre: "Ana".into(),
        mail: "sin arroba".into(),
    };
    match client.request::<_, MsgPack<Persona>>(MsgPack(bad)).await {
        Err(enchufe::client::Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::Handler);
            assert!(message.contains("no valid mail"), "{message}");
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
    server.shutdown().await;

    // The other formats and the user's codec over an in-memory transport.
    let (a, b) = tokio::io::duplex(4096);
    let config = FramingConfig::default().max_frame_length(1024);
    let (mut left, mut right) = (
        Transport::with_config(a, &config),
        Transport::with_config(b, &config),
    );
    left.send_msg(Postcard(&juan)).await.unwrap();
    left.send_msg(Json(1.5f64)).await.unwrap();
    left.send_msg(Tagged(7, 300)).await.unwrap();
    left.send_msg(Text::from("hola")).await.unwrap();
    left.send_msg(Raw::from_static(b"\x00\x01")).await.unwrap();
    let Postcard(p): Postcard<Persona> = right.recv_msg().await.unwrap().unwrap();
    let Json(x): Json<f64> = right.recv_msg().await.unwrap().unwrap();
    let tagged: Tagged = right.recv_msg().await.unwrap().unwrap();
    let text: Text = right.recv_msg().await.unwrap().unwrap();
    let raw: Raw = right.recv_msg().await.unwrap().unwrap();
    assert_eq!((p, x, tagged), (juan, 1.5, Tagged(7, 300)));
    assert_eq!((text.as_str(), &raw[..]), ("hola", &b"\x00\x01"[..]));

    // The peer's config is reachable by its own name too.
    let peer = PeerConfig::new("nodo-1").keepalive(Duration::from_secs(5));
    assert!(format!("{peer:?}").contains("nodo-1"));
}
