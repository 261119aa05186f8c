//! Typing and presence, to this node's sockets. Typing comes from the
//! ephemeral bus (this node's and, in a cluster, the other nodes' alike) and
//! goes to the conversation's sockets of other users. Presence changes come
//! from `presence` (which applies the contract's times) and go to the
//! conversation sockets of every conversation of the user (and of direct
//! ones naming them, members yet or not), and to the user sockets of
//! everyone who shares one with them.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::ephemeral::Ephemeral;
use super::hub::Outbound;
use super::presence::PresenceChange;
use super::{frames, Chat};
use crate::domain::{Conversation, Username};
use crate::shutdown::Stopping;

/// How many new memberships may wait for `awareness` (see `fanout::Targets::joins`).
pub const JOINS_BACKLOG: usize = 1024;

/// Starts the tasks that bring typing and presence to sockets; they end at
/// shutdown (they hold the chat, and so storage, until then). `joins` are
/// the fan-out's new members.
pub fn start(chat: Arc<Chat>, stopping: Stopping, joins: mpsc::Receiver<(Username, Conversation)>) {
    tokio::spawn(route_typing(chat.clone(), stopping.clone()));
    tokio::spawn(route_presence(chat.clone(), stopping.clone()));
    tokio::spawn(show_new_members(chat, stopping, joins));
}

/// A new member who is online is a change of the conversation's online
/// members: its sockets, and its members' user sockets, hear of it. In a
/// cluster the member's presence may have arrived before their membership
/// was applied here, and was then told to nobody in this conversation.
async fn show_new_members(
    chat: Arc<Chat>,
    mut stopping: Stopping,
    mut joins: mpsc::Receiver<(Username, Conversation)>,
) {
    loop {
        let (user, conversation) = tokio::select! {
            join = joins.recv() => match join {
                Some(join) => join,
                None => return,
            },
            _ = stopping.requested() => return,
        };
        if !chat.presence.is_online(user.as_str()) {
            continue;
        }
        let key = conversation.key();
        let frame = frames::presence_bytes(user.as_str(), true);
        chat.hub.to_conversation_sockets(&key, user.as_str(), &frame);
        let members_key = key.clone();
        match chat.store.call(move |store| store.members_of(&members_key)).await {
            Ok(members) => {
                for member in members.iter().filter(|member| member.as_str() != user.as_str()) {
                    for inbox in chat.live.inboxes_of(member) {
                        inbox.deliver(Outbound::Frame(frame.clone()));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, conversation = %key, "cannot read whom to tell of a new member"),
        }
    }
}

async fn route_typing(chat: Arc<Chat>, mut stopping: Stopping) {
    let mut events = chat.ephemeral.subscribe();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stopping.requested() => return,
        };
        match event {
            Ok(Ephemeral::Typing { conversation, user, at_ms }) => {
                let at_ms = if at_ms == 0 { crate::storage::now_ms() } else { at_ms };
                if !chat.typing_delivered.allow(&user, &conversation, at_ms) {
                    continue;
                }
                let key = conversation.key();
                chat.hub.to_conversation_sockets(&key, user.as_str(), &frames::typing_bytes(&key, user.as_str()));
            }
            Ok(_) => {}
            // An old typing notice is worth nothing: skip what was missed.
            Err(RecvError::Lagged(missed)) => tracing::debug!(missed, "typing events skipped"),
            Err(RecvError::Closed) => return,
        }
    }
}

async fn route_presence(chat: Arc<Chat>, mut stopping: Stopping) {
    let mut changes = chat.presence.changes();
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = stopping.requested() => return,
        };
        match change {
            Ok(change) => announce(&chat, change).await,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "presence changes skipped: some sockets show a stale presence until the next change"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// One presence change, to the sockets that show that user.
async fn announce(chat: &Chat, change: PresenceChange) {
    let user = change.user.as_str().to_owned();
    let who = user.clone();
    let found = chat.store.call(move |store| store.conversations_and_contacts(&who)).await;
    let (mut conversations, contacts) = match found {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, user = %user, "cannot read whom to tell of a presence change");
            return;
        }
    };
    for direct in chat.hub.watched_directs_of(&user) {
        if !conversations.contains(&direct) {
            conversations.push(direct);
        }
    }
    let frame = frames::presence_bytes(&user, change.online);
    for key in &conversations {
        chat.hub.to_conversation_sockets(key, &user, &frame);
    }
    for contact in contacts.iter().filter(|contact| **contact != user) {
        for inbox in chat.live.inboxes_of(contact) {
            inbox.deliver(Outbound::Frame(frame.clone()));
        }
    }
}
