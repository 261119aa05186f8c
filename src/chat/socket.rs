//! One WebSocket, from upgrade to close. The data path of a message reads
//! top to bottom here: read a frame → `frames::parse_inbound` → rate limit →
//! `WriteLog::submit` (stored), then the log's event → `fanout` → `hub` →
//! every socket's writer task (`write_loop`). Reading and writing run as two tasks over the split socket,
//! so a slow reader never blocks delivery and vice versa.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};

use super::frame_reader::{self, ClientFrame, FrameReader, ReadError};
use super::frames::{self, Inbound, PageBuilder, Refusal, MAX_FRAME_BYTES};
use super::hub::{Outbound, SocketKind, Subscriber, UrgentClose};
use super::shared_io::SharedIo;
use super::socket_queue;
use super::write_buffer::LazyBufWriter;
use super::Chat;
use crate::domain::{Conversation, MessageId, Username};
use crate::log::write::Write;
use crate::log::{Pending, Ticket};
use crate::storage::{now_ms, MarkerMove, PageFrom, StorageError};

/// Frames queued for one socket before it counts as a slow consumer.
const OUTBOUND_QUEUE: usize = 1024;
/// Messages in the `history` frame of a fresh connection.
const HISTORY_ON_CONNECT: usize = 50;
/// Messages in the `history` frame of a `since=` recovery.
const HISTORY_ON_RECOVERY: usize = 1000;
/// History frames built or being sent at once across the server, each at
/// most `frames::MAX_PAGE_BYTES`: bounds their memory to a few MiB.
pub const HISTORY_FRAMES_AT_ONCE: usize = 8;

type Reader = FrameReader<SharedIo>;
type Writer = WebSocketWrite<LazyBufWriter<SharedIo>>;

/// How long a closing socket waits for the peer's side of the close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// A client that takes longer than this to accept a batch of frames is gone
/// or not reading; its socket is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who opened the socket and what it watches; checked before the upgrade.
pub struct SocketRequest {
    /// Whose socket it is: messages are stored under this name.
    pub user: Username,
    /// The session it was opened with: signing out closes it.
    pub session: [u8; 32],
    /// What it watches and sends to.
    pub watch: Watch,
    /// `?since=`: the last id the client has; its history frame starts after it.
    pub since: Option<MessageId>,
}

/// What a socket watches.
pub enum Watch {
    /// One conversation (`/ws/chat/<room>/`, `/ws/direct/<user>/`): its
    /// history, messages, edits, deletions, typing and members' presence.
    Conversation(Conversation),
    /// All of the user's conversations (`/ws/user/`): the inbox, then their
    /// messages, edits and deletions, the user's read markers and presence.
    Inbox,
}

impl Watch {
    fn kind(&self) -> SocketKind {
        match self {
            Watch::Conversation(_) => SocketKind::Conversation,
            Watch::Inbox => SocketKind::Inbox,
        }
    }
}

/// Counts the socket as open for as long as it lives, panics included.
struct OpenGauge<'a>(&'a AtomicI64);

impl<'a> OpenGauge<'a> {
    fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenGauge(gauge)
    }
}

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one socket after its upgrade was accepted: history, then live messages
/// both ways until either side closes or the server stops.
pub async fn serve(chat: Arc<Chat>, upgrade: UpgradeFut, request: SocketRequest) {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade did not complete");
            return;
        }
    };
    let _open = OpenGauge::new(&chat.metrics.open_sockets);
    chat.metrics.sockets_accepted.fetch_add(1, Ordering::Relaxed);
    // fastwebsockets writes our frames; its reader (and the 8 KiB buffer
    // it keeps for the socket's life) is dropped here for ours, which holds
    // memory only while a frame is arriving.
    let closer = std::cell::OnceCell::new();
    let (_, writer) = ws.split(|io| {
        let shared = SharedIo::new(io);
        let _ = closer.set(shared.clone());
        (shared.clone(), LazyBufWriter::new(shared))
    });
    let closer: SharedIo = closer.into_inner().expect("split calls its closure once");
    let reader = FrameReader::new(closer.clone(), MAX_FRAME_BYTES);

    let (subscriber, queue, urgent) = Subscriber::new(OUTBOUND_QUEUE, request.user.as_str(), request.watch.kind());
    let registration = chat.live.register(request.user.as_str(), request.session, subscriber.clone());
    // Online from now until the socket ends, on every node.
    let _online = chat.presence.socket_opened(&request.user);
    // Subscribed before the first frame is read: an entry committed in
    // between is then in both, and the writer skips the live copy by id.
    let subscribed = Box::pin(subscribe(&chat, &request, &subscriber)).await;

    // At most HISTORY_FRAMES_AT_ONCE history frames are built or being sent
    // across the server: a burst of sockets asking for 1 MiB each waits here
    // instead of holding that much each. The writer drops the permit once
    // the frame is sent (or the socket is gone).
    let permit = Arc::clone(&chat.history_frames).acquire_owned().await.expect("the semaphore is never closed");
    let first = match subscribed {
        Ok(()) => Box::pin(first_frames(&chat, &request)).await,
        Err(error) => Err(error),
    };
    match first {
        Ok((signed_in, frames, covers)) => {
            if !signed_in {
                subscriber.close(1008, "signed out");
            }
            // Pings at 2/5 of the idle limit: a live client answers twice
            // before it would count as silent.
            let ping_every = chat.socket_idle_timeout * 2 / 5;
            let history = History { frames, covers, permit };
            let writer_task = tokio::spawn(write_loop(writer, queue, urgent, history, ping_every));
            let mut writer_task = AbortOnDrop(writer_task);
            let writer_finished = tokio::select! {
                _ = read_loop(&chat, reader, &subscriber, &request) => false,
                // The writer closed the socket (slow consumer, shutdown, error): stop reading.
                _ = &mut writer_task.0 => true,
            };
            unsubscribe(&chat, &subscriber);
            // The last senders of the socket's queue: once gone, the writer
            // ends after what is queued (a close echo, an error frame).
            drop(registration);
            drop(subscriber);
            if !writer_finished {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, &mut writer_task.0).await;
            }
        }
        Err(error) => {
            tracing::error!(%error, user = %request.user, "reading the socket's first frame failed; closing the socket");
            unsubscribe(&chat, &subscriber);
            let mut writer = writer;
            let _ = Box::pin(close(&mut writer, 1011, "storage unavailable")).await;
        }
    }
    Box::pin(closer.finish(CLOSE_LINGER)).await;
}

/// Subscribes the socket to what it watches: its conversation, or every
/// conversation of its user (one joined later is added by the fan-out).
async fn subscribe(chat: &Arc<Chat>, request: &SocketRequest, me: &Arc<Subscriber>) -> Result<(), StorageError> {
    match &request.watch {
        Watch::Conversation(conversation) => chat.hub.subscribe(&conversation.key(), me.clone()),
        Watch::Inbox => {
            let user = request.user.as_str().to_owned();
            for key in chat.store.call(move |store| store.conversation_keys_of(&user)).await? {
                chat.hub.subscribe(&key, me.clone());
            }
        }
    }
    Ok(())
}

/// Takes the socket out of every conversation it watched.
fn unsubscribe(chat: &Chat, me: &Subscriber) {
    chat.hub.unsubscribe_everywhere(me);
}

/// The socket's first frames, read in one snapshot: a conversation's
/// `history` (then its online members), or the user socket's `inbox`; with
/// whether the session is still signed in, and the newest id they cover.
async fn first_frames(
    chat: &Arc<Chat>,
    request: &SocketRequest,
) -> Result<(bool, Vec<Bytes>, Option<MessageId>), StorageError> {
    let session = request.session;
    let user = request.user.clone();
    match &request.watch {
        Watch::Conversation(conversation) => {
            let key = conversation.key();
            let (from, limit) = match request.since {
                Some(since) => (PageFrom::After(since), HISTORY_ON_RECOVERY),
                None => (PageFrom::Before(None), HISTORY_ON_CONNECT),
            };
            let (signed_in, history, covers) = chat
                .store
                .call(move |store| {
                    // Checked again now that the socket is registered: a sign-out
                    // between the upgrade's check and the registration is not missed.
                    let signed_in = store.session_user(&session, now_ms())?.is_some();
                    // Serialised as read, so that storage stops at the byte cap and
                    // the messages themselves are not kept alive in this task.
                    let mut page = PageBuilder::history(from);
                    let history = store.socket_history(&key, from, limit, |m| page.push(&m))?;
                    Ok((signed_in, page.finish(frames::page_has_more(from, history.end)), history.latest))
                })
                .await?;
            let online = chat.online_members(conversation).await?;
            Ok((signed_in, vec![history, frames::presence_list_bytes(&online)], covers))
        }
        Watch::Inbox => {
            let name = user.as_str().to_owned();
            let (signed_in, summaries, covers) = chat
                .store
                .call(move |store| {
                    let signed_in = store.session_user(&session, now_ms())?.is_some();
                    let (summaries, covers) = store.inbox(&name)?;
                    Ok((signed_in, summaries, covers))
                })
                .await?;
            let online = chat.online_contacts(user.as_str()).await?;
            let mut inbox = frames::inbox(&user, &summaries, &online);
            inbox["type"] = serde_json::Value::from("inbox");
            Ok((signed_in, vec![Bytes::from(serde_json::to_vec(&inbox).expect("JSON serialises"))], covers))
        }
    }
}

/// Stops the writer task if the socket's task ends without it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads client frames until the client closes, the socket dies, or a frame
/// breaks a rule that closes it.
async fn read_loop(chat: &Chat, mut reader: Reader, me: &Arc<Subscriber>, request: &SocketRequest) {
    let idle = chat.socket_idle_timeout;
    // A fragmented message being reassembled.
    let mut partial: Option<Vec<u8>> = None;
    while let Some(frame) = next_frame(&mut reader, idle, me).await {
        let complete: Bytes = match (frame.opcode, frame.fin, partial.as_mut()) {
            (OpCode::Close, _, _) => {
                // Echoed (section 5.5.1), unless the close itself breaks a rule.
                match frame_reader::close_answer(&frame.payload) {
                    Ok(echo) => me.deliver(Outbound::Control(Frame::close_raw(Payload::Owned(echo.to_vec())))),
                    Err((code, reason)) => me.deliver(Outbound::Close(code, reason)),
                };
                return;
            }
            (OpCode::Ping, _, _) => {
                me.deliver(Outbound::Control(Frame::pong(Payload::Owned(frame.payload.to_vec()))));
                continue;
            }
            (OpCode::Pong, _, _) => continue,
            (OpCode::Binary, _, _) => {
                me.deliver(Outbound::Close(1003, "binary messages are not accepted"));
                return;
            }
            (OpCode::Text, true, None) => {
                if std::str::from_utf8(&frame.payload).is_err() {
                    me.deliver(Outbound::Close(1007, "text frame is not UTF-8"));
                    return;
                }
                frame.payload
            }
            (OpCode::Text, false, None) => {
                partial = Some(frame.payload.to_vec());
                continue;
            }
            (OpCode::Continuation, fin, Some(buffer)) => {
                if buffer.len() + frame.payload.len() > MAX_FRAME_BYTES {
                    me.deliver(Outbound::Close(1009, "message over 64 KiB"));
                    return;
                }
                buffer.extend_from_slice(&frame.payload);
                if !fin {
                    continue;
                }
                let whole = partial.take().unwrap_or_default();
                if std::str::from_utf8(&whole).is_err() {
                    me.deliver(Outbound::Close(1007, "text message is not UTF-8"));
                    return;
                }
                Bytes::from(whole)
            }
            _ => {
                me.deliver(Outbound::Close(1002, "unexpected continuation frame"));
                return;
            }
        };
        // Boxed: its state (a storage call, a log submit) would otherwise sit in
        // every socket's task for its whole life; inbound frames are few next to deliveries.
        if !Box::pin(accept(chat, me, request, &complete)).await {
            return;
        }
    }
}

/// The next client frame, unmasked. `None` once the
/// socket is done: the read failed or timed out, or the frame broke a rule
/// (its close is then queued). Every frame, a ping included, restarts the
/// idle timer, since each one comes back from here.
async fn next_frame(reader: &mut Reader, idle: Duration, me: &Subscriber) -> Option<ClientFrame> {
    let close = |code: u16, reason: &'static str| {
        me.deliver(Outbound::Close(code, reason));
        None
    };
    let frame = match tokio::time::timeout(idle, reader.next_frame()).await {
        Ok(Ok(frame)) => frame,
        Err(_) => return close(1001, "idle timeout"),
        Ok(Err(ReadError::TooLarge)) => return close(1009, "message over 64 KiB"),
        Ok(Err(ReadError::Protocol(reason))) => return close(1002, reason),
        Ok(Err(ReadError::Gone(error))) => {
            if let Some(error) = error {
                tracing::debug!(%error, "socket read ended");
            }
            return None;
        }
    };
    Some(frame)
}

/// Handles one complete text message. Returns false when the socket is
/// being closed by the server and should read no more.
async fn accept(chat: &Chat, me: &Arc<Subscriber>, request: &SocketRequest, raw: &[u8]) -> bool {
    chat.metrics.frames_received.fetch_add(1, Ordering::Relaxed);
    if me.is_closing() {
        // Signed out or deactivated: the close is on its way; accept nothing more.
        return false;
    }
    let refuse = |refusal: Refusal, client_id: Option<&str>| {
        chat.metrics.frames_refused.fetch_add(1, Ordering::Relaxed);
        me.deliver(Outbound::Frame(frames::error_bytes(&refusal, client_id)));
    };
    let inbound = match frames::parse_inbound(raw) {
        Ok(inbound) => inbound,
        Err(refused) => {
            refuse(refused.refusal, refused.client_id.as_deref());
            return true;
        }
    };
    let conversation = match (&request.watch, &inbound) {
        (Watch::Conversation(conversation), _) => conversation.clone(),
        (Watch::Inbox, Inbound::Read { room: Some(room), .. }) => match inbox_conversation(room, &request.user) {
            Some(conversation) => conversation,
            None => {
                refuse(Refusal::BadFrame("\"room\" must name one of your conversations (a room, or dm:a:b)"), None);
                return true;
            }
        },
        (Watch::Inbox, Inbound::Read { room: None, .. }) => {
            refuse(Refusal::BadFrame("a read frame on the user socket needs \"room\""), None);
            return true;
        }
        (Watch::Inbox, _) => {
            refuse(
                Refusal::BadFrame(
                    "the user socket takes only read frames: open the conversation's socket to write there",
                ),
                None,
            );
            return true;
        }
    };
    if inbound.is_rated() && !chat.message_rate.allow(request.user.as_str()) {
        let client_id = match &inbound {
            Inbound::Message { client_id, .. }
            | Inbound::Edit { client_id, .. }
            | Inbound::Delete { client_id, .. } => client_id.as_deref(),
            _ => None,
        };
        refuse(Refusal::RateLimited, client_id);
        return true;
    }
    let user = request.user.clone();
    let (write, client_id) = match inbound {
        Inbound::Message { text, client_id } => {
            (Write::Message { conversation, author: user, text, ts_ms: now_ms() }, client_id)
        }
        Inbound::Edit { target, text, client_id } => {
            (Write::Edit { conversation, editor: user, target, text, ts_ms: now_ms() }, client_id)
        }
        Inbound::Delete { target, client_id } => {
            (Write::Delete { conversation, deleter: user, target, ts_ms: now_ms() }, client_id)
        }
        Inbound::Read { up_to, .. } => {
            // Checked here first: a repeated, backward or bogus marker costs a read, not a write.
            let (name, key) = (user.as_str().to_owned(), conversation.key());
            match chat.store.call(move |store| store.marker_move(&name, &key, up_to)).await {
                Ok(MarkerMove::Moved) => {}
                Ok(MarkerMove::NotForward) => return true,
                Ok(MarkerMove::NoSuchEntry) => {
                    refuse(Refusal::BadFrame(NO_SUCH_ENTRY), None);
                    return true;
                }
                Err(_) => {
                    refuse(Refusal::Unavailable, None);
                    return true;
                }
            }
            (Write::Read { username: user, conversation, up_to }, None)
        }
        Inbound::Typing => {
            chat.user_typing(&conversation, &request.user);
            return true;
        }
    };
    // Stored first; the fan-out then brings it to every socket, this one
    // included (with its client_id). A refusal comes back as an error frame.
    let ticket = Ticket::Connection { connection: me.id, client_id };
    chat.log.submit(Pending { write, ticket }).await;
    true
}

/// Why a read frame naming an id the conversation does not hold is refused.
pub const NO_SUCH_ENTRY: &str = "up_to is not an id of this conversation";

/// The conversation a user socket's read frame names, if the user may be
/// in it: any room, or a direct conversation of theirs.
fn inbox_conversation(room: &str, user: &Username) -> Option<Conversation> {
    let conversation = Conversation::from_key(room)?;
    match &conversation {
        Conversation::Room(_) => Some(conversation),
        Conversation::Direct { low, high } => (low == user || high == user).then_some(conversation),
    }
}

/// Drains the socket's queue: the history frame first, then queued frames in
/// order, flushing once per batch. Closes ahead of the queue when the hub
/// asks (1008 slow consumer, 1001 shutdown). Every write has a deadline, so
/// a client that stopped reading cannot hold the task (or shutdown) forever.
///
/// This loop runs once per delivered message, so it waits on the queue and
/// the ping timer only: urgent closes are a flag read between batches, and
/// the write deadline is armed only when the socket pushes back.
async fn write_loop(
    mut ws: Writer,
    mut queue: socket_queue::Receiver<Outbound>,
    urgent: Arc<UrgentClose>,
    history: History,
    ping_every: Duration,
) {
    let sent = Box::pin(with_deadline(async {
        for frame in &history.frames {
            send_text(&mut ws, frame).await?;
        }
        ws.flush().await
    }));
    if !matches!(sent.await, Ok(())) {
        return;
    }
    // Sent: do not keep up to 1 MiB alive for the socket's whole life, and
    // let the next socket build its history.
    let History { frames, covers: history_covers, permit } = history;
    drop((frames, permit));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        if let Some((code, reason)) = urgent.requested() {
            let _ = Box::pin(with_deadline(close(&mut ws, code, reason))).await;
            return;
        }
        let step = tokio::select! {
            biased;
            item = queue.recv() => match item {
                Some(item) => Step::Write(item),
                None => return,
            },
            _ = ping.tick() => Step::Ping,
        };
        // The rare ping is boxed, so that only the batch write's state sits
        // in every socket's writer task.
        let written = match step {
            Step::Ping => Box::pin(with_deadline(send_ping(&mut ws))).await,
            Step::Write(first) => with_deadline(write_batch(&mut ws, first, &mut queue, &urgent, history_covers)).await,
        };
        match written {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Keeps the connection (and any proxy on the way) from counting it idle.
async fn send_ping(ws: &mut Writer) -> Result<bool, WebSocketError> {
    ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"chatctl"))).await?;
    ws.flush().await.map(|_| true)
}

/// A socket's first frames (`history` and `presence`, or `inbox`) on their way out.
struct History {
    frames: Vec<Bytes>,
    /// The newest id when the frame was read: live copies up to it are skipped.
    covers: Option<MessageId>,
    /// Held until the frame is sent; see `serve`.
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// What the writer does next.
enum Step {
    Write(Outbound),
    Ping,
}

/// Runs a write under `WRITE_TIMEOUT`. Most writes finish at the first poll
/// (the kernel takes the bytes), and those never touch the timer wheel.
async fn with_deadline<T>(
    write: impl std::future::Future<Output = Result<T, WebSocketError>>,
) -> Result<T, WebSocketError> {
    let mut write = std::pin::pin!(write);
    if let Some(done) = futures_lite::future::poll_once(&mut write).await {
        return done;
    }
    // Boxed: the timer exists only while a socket pushes back, not in every writer task's state.
    match Box::pin(tokio::time::timeout(WRITE_TIMEOUT, write)).await {
        Ok(done) => done,
        Err(_) => Err(WebSocketError::IoError(std::io::ErrorKind::TimedOut.into())),
    }
}

/// Frames written between two flushes at most, so that an urgent close is
/// noticed between batches even under a steady stream.
const MAX_WRITE_BATCH: usize = 256;

/// Writes `first` and whatever else is queued, then flushes once. Ok(false)
/// once a close frame went out.
async fn write_batch(
    ws: &mut Writer,
    first: Outbound,
    queue: &mut socket_queue::Receiver<Outbound>,
    urgent: &UrgentClose,
    history_covers: Option<MessageId>,
) -> Result<bool, WebSocketError> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next {
        let open = write_item(ws, item, history_covers).await?;
        written += 1;
        if !open {
            break;
        }
        let more = written < MAX_WRITE_BATCH && urgent.requested().is_none();
        next = if more { queue.try_recv().ok() } else { None };
        if next.is_none() {
            ws.flush().await?;
            return Ok(true);
        }
    }
    ws.flush().await?;
    Ok(false)
}

/// Writes one queued item; Ok(false) once the socket is closed.
async fn write_item(
    ws: &mut Writer,
    item: Outbound,
    history_covers: Option<MessageId>,
) -> Result<bool, WebSocketError> {
    match item {
        Outbound::Message { id, bytes } => {
            if history_covers.is_none_or(|covered| id > covered) {
                send_text(ws, &bytes).await?;
            }
            Ok(true)
        }
        Outbound::Frame(bytes) => send_text(ws, &bytes).await.map(|_| true),
        Outbound::Control(frame) => {
            let is_close = frame.opcode == OpCode::Close;
            ws.write_frame(frame).await?;
            Ok(!is_close)
        }
        Outbound::Close(code, reason) => {
            close(ws, code, reason).await?;
            Ok(false)
        }
    }
}

async fn send_text(ws: &mut Writer, bytes: &Bytes) -> Result<(), WebSocketError> {
    ws.write_frame(Frame::text(Payload::Borrowed(bytes))).await
}

async fn close(ws: &mut Writer, code: u16, reason: &str) -> Result<(), WebSocketError> {
    ws.write_frame(Frame::close(code, reason.as_bytes())).await?;
    ws.flush().await
}
