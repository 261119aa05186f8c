//! A socket's outbound queue: bounded like tokio's `mpsc`, but holding no
//! memory while empty (tokio's keeps a 32-slot block for the socket's life,
//! 1.5 KiB of our frames; most sockets are idle most of the time).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A queue holding at most `capacity` items: its sending and receiving ends
/// (one of each: a socket's queue has one subscriber feeding one writer).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), sender_alive: true, receiver_alive: true }),
        ready: Notify::new(),
        capacity,
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// What both ends hold: the items and how the receiver learns of them.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver: an item arrived or the sender left. A
    /// notification sent while it is not waiting is kept for its next wait.
    ready: Notify,
    capacity: usize,
}

/// Changed only under the lock, so that a send, a wait and an end never cross.
struct State<T> {
    items: VecDeque<T>,
    sender_alive: bool,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why `try_send` did not queue the item (it is handed back).
#[derive(Debug, thiserror::Error)]
pub enum TrySendError<T> {
    /// `capacity` items are waiting: the receiver is not keeping up.
    #[error("the queue is full")]
    Full(T),
    /// The receiver is gone.
    #[error("the queue's receiver is gone")]
    Closed(T),
}

/// The queue was empty (`try_recv`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the queue is empty")]
pub struct Empty;

/// The sending end; the receiver sees the end of the queue once it is dropped.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.0.lock();
            if !state.receiver_alive {
                return Err(TrySendError::Closed(item));
            }
            if state.items.len() >= self.0.capacity {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
        }
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().sender_alive = false;
        self.0.ready.notify_one();
    }
}

/// The receiving end, drained by one task.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and the sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.0.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if !state.sender_alive {
                    return None;
                }
                // About to wait, perhaps for a long time: hold nothing meanwhile.
                state.items = VecDeque::new();
            }
            self.0.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, Empty> {
        self.0.lock().items.pop_front().ok_or(Empty)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        state.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(Empty));
        tx.try_send(4).unwrap();
        assert_eq!(rx.recv().await, Some(4));
    }

    #[tokio::test]
    async fn the_receiver_ends_after_the_last_item_once_the_sender_is_gone() {
        let (tx, mut rx) = channel(8);
        tx.try_send("a").unwrap();
        tx.try_send("b").unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some("a"));
        assert_eq!(rx.recv().await, Some("b"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = channel(8);
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        assert_eq!(waiting.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn sending_to_a_dropped_receiver_hands_the_item_back() {
        let (tx, rx) = channel(8);
        drop(rx);
        assert!(matches!(tx.try_send(9), Err(TrySendError::Closed(9))));
    }

    #[tokio::test]
    async fn an_empty_queue_holds_no_memory_while_waited_on() {
        let (tx, mut rx) = channel(64);
        for i in 0..40 {
            tx.try_send(i).unwrap();
        }
        for _ in 0..40 {
            rx.recv().await.unwrap();
        }
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv()).await;
        assert!(waiting.is_err());
        assert_eq!(rx.0.lock().items.capacity(), 0);
    }
}
