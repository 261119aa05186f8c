//! The broker's self-description (product and version), read from a
//! plain AMQP handshake of our own, because lapin keeps it to itself.

use lapin::protocol::{connection, AMQPClass};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::broker::{Server, Target};
use super::diagnosis::{diagnose, Failure, Phase};

/// Opens a plain AMQP handshake of our own and reads the broker's product and
/// version from its connection.start, then hangs up.
pub(super) async fn read_server(target: &Target) -> Result<Server, String> {
    let unreachable = |error: std::io::Error| diagnose(&Failure::Io(error), Phase::Connect, target);
    let host = target.uri.authority.host.as_str();
    let mut socket = TcpStream::connect((host, target.uri.authority.port)).await.map_err(unreachable)?;
    socket.write_all(b"AMQP\x00\x00\x09\x01").await.map_err(unreachable)?;
    let not_amqp = |what: &str| {
        format!(
            "something answers at {} but it is not an AMQP 0-9-1 broker ({what}); is this RabbitMQ's AMQP \
             port (5672, or 5671 with amqps://)?",
            target.addr()
        )
    };
    let mut header = [0u8; 7];
    socket.read_exact(&mut header).await.map_err(|_| not_amqp("it closed the connection"))?;
    if header.starts_with(b"AMQP") {
        return Err(not_amqp("it speaks another AMQP version"));
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 1 << 20 {
        return Err(not_amqp("its first frame is not connection.start"));
    }
    let mut payload = vec![0u8; size + 1];
    socket.read_exact(&mut payload).await.map_err(|_| not_amqp("it sent a short frame"))?;
    let _ = socket.shutdown().await;
    match lapin::protocol::parse_class(&payload[..size]) {
        Ok((_, AMQPClass::Connection(connection::AMQPMethod::Start(start)))) => {
            Ok(Server::from_properties(&start.server_properties))
        }
        _ => Err(not_amqp("its first frame is not connection.start")),
    }
}
