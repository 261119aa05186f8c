//! Live chat: frames, the per-socket tasks and the in-process hub. Messages
//! are stored through `crate::log` before the hub fans them out.

pub mod frames;
pub mod hub;
pub mod live;
pub mod rate_limit;
pub mod shared_io;
pub mod socket;
pub mod write_buffer;
