//! Live chat: frames, the per-socket tasks, the message log (store, then
//! fan out) and the in-process hub.

pub mod frames;
pub mod hub;
pub mod live;
pub mod log;
pub mod rate_limit;
pub mod shared_io;
pub mod socket;
