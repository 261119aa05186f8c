//! Live chat: frames, the per-socket tasks and the in-process hub. A
//! message goes socket -> frames -> `crate::log` (stored), then the log's
//! event -> `fanout` -> hub -> sockets.

pub mod fanout;
pub mod frames;
pub mod hub;
pub mod live;
pub mod rate_limit;
pub mod shared_io;
pub mod socket;
pub mod write_buffer;
