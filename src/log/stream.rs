//! Facts about the RabbitMQ stream that holds a cluster's log, shared by the
//! server (`cluster`) and the admin commands (`rabbit-check`, the
//! `--amqp-stream` flags) so the two cannot drift apart. No I/O here.

use lapin::types::AMQPValue;
use lapin::BasicProperties;

/// The stream queue a cluster keeps its log in unless `--amqp-stream` names
/// another: serve, rabbit-check and the admin commands must agree on it.
pub const DEFAULT_STREAM: &str = "chatctl.log";

/// The consumer argument that says where to start reading a stream, and the
/// header RabbitMQ puts on each delivery to say where it was.
pub const OFFSET_HEADER: &str = "x-stream-offset";

/// A delivery's offset in its stream, read from its properties; None when it
/// carries no offset (the queue is not a stream) or one that is not a
/// non-negative integer. RabbitMQ sends a signed 64-bit value; the narrower
/// widths are accepted too, as any AMQP peer may send them.
pub fn offset_of(properties: &BasicProperties) -> Option<u64> {
    match *properties.headers().as_ref()?.inner().get(OFFSET_HEADER)? {
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(n)),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(n)),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldTable;

    fn with_offset(value: AMQPValue) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(OFFSET_HEADER.into(), value);
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn a_delivery_offset_is_read_whatever_its_integer_width() {
        assert_eq!(offset_of(&with_offset(AMQPValue::LongLongInt(42))), Some(42));
        assert_eq!(offset_of(&with_offset(AMQPValue::LongInt(7))), Some(7));
        assert_eq!(offset_of(&with_offset(AMQPValue::ShortUInt(3))), Some(3));
    }

    #[test]
    fn a_delivery_without_a_usable_offset_has_none() {
        assert_eq!(offset_of(&BasicProperties::default()), None);
        assert_eq!(offset_of(&with_offset(AMQPValue::LongLongInt(-1))), None);
        assert_eq!(offset_of(&with_offset(AMQPValue::LongString("first".into()))), None);
    }
}
