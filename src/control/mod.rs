//! The local control socket (`<data-dir>/control.sock`): how `chatctl`
//! admin commands reach a running server on the same machine. One JSON
//! request line in, one JSON response line out (`protocol`).
//!
//! - `ops`: the operations themselves (create a superuser, set a password,
//!   list and (de)activate users, back up). The server runs them for socket
//!   requests; the command line runs the very same functions on a data dir
//!   no server holds. Writes go through the write log, so a single node and
//!   a cluster node both apply them in order and fan out their effects.
//! - `server`: the listener `startup` spawns (owner-only, peer uid checked).
//! - `client`: connecting and asking, for the command line.

pub mod client;
pub mod ops;
pub mod protocol;
pub mod server;
