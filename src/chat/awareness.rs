//! Ephemeral events from the bus to this node's sockets: typing to the
//! conversation's sockets of other users. One task per node listens to
//! the bus (`ephemeral`), where this node's events and, in a cluster, the
//! other nodes' arrive alike.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::ephemeral::Ephemeral;
use super::{frames, Chat};
use crate::shutdown::Stopping;

/// Starts the task that brings ephemeral events to sockets; it ends at
/// shutdown (it holds the chat, and so storage, until then).
pub fn start(chat: Arc<Chat>, mut stopping: Stopping) {
    let mut events = chat.ephemeral.subscribe();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = stopping.requested() => return,
            };
            match event {
                Ok(event) => route(&chat, event),
                // An old typing notice is worth nothing: skip what was missed.
                Err(RecvError::Lagged(missed)) => tracing::debug!(missed, "ephemeral events skipped"),
                Err(RecvError::Closed) => return,
            }
        }
    });
}

fn route(chat: &Chat, event: Ephemeral) {
    match event {
        Ephemeral::Typing { conversation, user } => {
            let key = conversation.key();
            chat.hub.to_conversation_sockets(&key, user.as_str(), &frames::typing_bytes(&key, user.as_str()));
        }
        Ephemeral::Presence { .. } => {}
    }
}
