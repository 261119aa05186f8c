//! Stopping the server without polling, in the shape of mini-redis's
//! `shutdown.rs`: one signal that every long-running task watches, and a
//! completion channel of which every such task holds a sender. Shutdown
//! flips the signal, drops its own sender and waits until the channel says
//! no sender is left: exactly when the last task has ended. A task that
//! never ends shows as the grace period running out, named in the log.

use std::time::Instant;

use tokio::sync::{mpsc, watch};

/// A new signal and its controller.
pub fn channel() -> (Shutdown, Stopping) {
    let (signal, watched) = watch::channel(false);
    let (running, finished) = mpsc::channel(1);
    let stopping = Stopping { signal: watched, running: running.downgrade() };
    (Shutdown { signal, running: Some(running), finished }, stopping)
}

/// Held by whoever stops the server (`RunningServer`).
pub struct Shutdown {
    signal: watch::Sender<bool>,
    running: Option<mpsc::Sender<()>>,
    finished: mpsc::Receiver<()>,
}

/// Held by every long-running task: says when to stop, and hands out the
/// `Running` guard that counts a task as running.
#[derive(Clone)]
pub struct Stopping {
    signal: watch::Receiver<bool>,
    running: mpsc::WeakSender<()>,
}

/// Counts its task as running until dropped.
pub struct Running {
    _sender: mpsc::Sender<()>,
}

impl Shutdown {
    /// Tells every task to stop.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Waits until every task holding a `Running` has ended, or `deadline`
    /// passes; says which.
    pub async fn tasks_finished(&mut self, deadline: Instant) -> bool {
        self.running = None;
        // Nothing is ever sent: `recv` returns `None` when the last sender is gone.
        tokio::time::timeout_at(deadline.into(), self.finished.recv()).await.is_ok()
    }
}

impl Stopping {
    /// Resolves once shutdown has begun.
    pub async fn requested(&mut self) {
        // The guard `wait_for` returns is not `Send`: drop it at once.
        let _ = self.signal.wait_for(|stopping| *stopping).await.map(|_| ());
    }

    /// Whether shutdown has begun.
    pub fn is_requested(&self) -> bool {
        *self.signal.borrow()
    }

    /// A guard that counts the calling task as running until it drops;
    /// `None` once shutdown no longer waits for anyone.
    pub fn running(&self) -> Option<Running> {
        self.running.upgrade().map(|sender| Running { _sender: sender })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_waits_for_exactly_the_running_tasks() {
        let (mut shutdown, stopping) = channel();
        let mut watched = stopping.clone();
        let guard = stopping.running().expect("shutdown has not begun");
        let task = tokio::spawn(async move {
            let _guard = guard;
            watched.requested().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        shutdown.begin();
        assert!(stopping.is_requested());
        let started = Instant::now();
        assert!(shutdown.tasks_finished(Instant::now() + Duration::from_secs(5)).await);
        assert!(started.elapsed() >= Duration::from_millis(150), "returned before the task ended");
        assert!(task.is_finished() || task.await.is_ok());
        assert!(stopping.running().is_none(), "nothing waits once shutdown has finished");
    }

    #[tokio::test]
    async fn a_task_that_never_ends_runs_out_the_grace_period() {
        let (mut shutdown, stopping) = channel();
        let _stuck = stopping.running();
        shutdown.begin();
        assert!(!shutdown.tasks_finished(Instant::now() + Duration::from_millis(100)).await);
    }
}
