//! Who is online, cluster-wide, by the contract's times (PROTOCOL.md,
//! "Presence"): a user is online while they have a WebSocket open on any
//! node. Sockets tell this module when they open and close (a
//! `PresenceGuard` each); the lead's socket code turns `changes()` into
//! `presence` frames. Nothing here knows of sockets, frames or storage.
//!
//! Each node keeps its own users (a socket counter per user) and tells the
//! others over the ephemeral bus: a `NodePresence` when a user's first
//! socket on it opens (at once) and when their last one has been closed
//! for `GRACE` (so a reconnect within it says nothing), and every
//! `HEARTBEAT_EVERY` a `PresenceHeartbeat` (its whole list only now and
//! then, or when asked). A node whose heartbeats stop for `NODE_EXPIRY`
//! takes its users with it. A user is online while any node counts them.
//! One task per node does all the timed work in one sweep a second.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::ephemeral::{Ephemeral, EphemeralBus};
use crate::domain::Username;
use crate::metrics::Metrics;
use crate::shutdown::Stopping;

/// How long a user's last socket on a node must stay closed before the node
/// counts them offline: a reconnect within it announces nothing. With the
/// sweep's second, offline is announced 5 to 6 s after the last close
/// (the contract allows 5 to 15).
pub const GRACE: Duration = Duration::from_secs(5);
/// How often the timed work runs: grace periods, heartbeats, expiry.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often a cluster node says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
/// Every this many heartbeats carries the node's whole list of users (the
/// first one too; and one is sent at once when a node asks with
/// `PresenceSync`); the others carry only counts. For a node with 2,000
/// users of 17-character names, a heartbeat is 63 bytes every 3 s, and the
/// full list 40 KB every 30 s (`a_heartbeat_of_2000_users_stays_small`).
pub const FULL_EVERY: u64 = 10;
/// A node not heard from for this long is taken for dead, and its users
/// offline: with the sweep, within 21 s of its last heartbeat (the contract
/// allows 30 s from its death).
pub const NODE_EXPIRY: Duration = Duration::from_secs(20);
/// How long a node waits for the full list it asked for before asking again.
const SYNC_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// Changes a `changes()` listener may fall behind by; past it, it skips the
/// oldest (`RecvError::Lagged`) and should read the state afresh with
/// `online_among`. A node of 2,000 users dying fits.
const CHANGES_BACKLOG: usize = 4096;

/// A user came online or went offline, cluster-wide: announced on each node
/// once per change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whose presence changed.
    pub user: Username,
    /// Whether they are now online.
    pub online: bool,
}

/// This node's view of who is online in the whole cluster.
pub struct Presence {
    state: Mutex<State>,
    bus: Arc<EphemeralBus>,
    changes: broadcast::Sender<PresenceChange>,
    metrics: Arc<Metrics>,
}

/// One open socket of a user; dropping it is that socket closing.
#[must_use = "the user counts as online only while the guard lives"]
pub struct PresenceGuard {
    presence: Arc<Presence>,
    user: Username,
}

impl Presence {
    /// Starts presence for this node (`node`: its id on the bus; any id for
    /// a single node): listens to the other nodes on `bus` and runs the
    /// sweep, until shutdown.
    pub fn start(bus: Arc<EphemeralBus>, node: u64, metrics: Arc<Metrics>, stopping: Stopping) -> Arc<Presence> {
        let presence = Arc::new(Presence {
            state: Mutex::new(State::new(node, bus.is_clustered(), Instant::now())),
            changes: broadcast::Sender::new(CHANGES_BACKLOG),
            bus: bus.clone(),
            metrics,
        });
        // Subscribed before the task runs: nothing said meanwhile is missed.
        tokio::spawn(run(presence.clone(), bus.subscribe(), stopping));
        presence
    }

    /// Counts a newly opened socket of `user` (any route); the user is online
    /// until the last of their guards, on every node, has dropped for `GRACE`.
    pub fn socket_opened(self: &Arc<Self>, user: &Username) -> PresenceGuard {
        self.update(|state, effects| state.open(user, effects));
        PresenceGuard { presence: self.clone(), user: user.clone() }
    }

    /// Whether `user` is online on any node.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().tally.is_online(user)
    }

    /// Those of `names` who are online, in the order given (for the
    /// `presence` frame after `history`, and the inbox's `online`).
    pub fn online_among<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<String> {
        let state = self.lock();
        names.filter(|name| state.tally.is_online(name)).map(str::to_owned).collect()
    }

    /// A listener of every cluster-wide change from now on, each once: a
    /// user coming online (on their first socket anywhere) or going offline
    /// (`GRACE` after their last socket anywhere closed, or when their node
    /// stopped being heard).
    pub fn changes(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the state and hands on what it produced, still under
    /// the lock: changes are announced and published in the order they happened.
    fn update(&self, change: impl FnOnce(&mut State, &mut Effects)) {
        let mut state = self.lock();
        let mut effects = Effects::default();
        change(&mut state, &mut effects);
        for event in effects.publish {
            self.bus.publish(event);
        }
        for announced in effects.announce {
            self.metrics.presence_changes.fetch_add(1, Ordering::Relaxed);
            let _ = self.changes.send(announced);
        }
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let now = Instant::now();
        self.presence.update(|state, _| state.close(&self.user, now));
    }
}

/// Hears the other nodes and runs the sweep, until shutdown.
async fn run(presence: Arc<Presence>, mut events: broadcast::Receiver<Ephemeral>, mut stopping: Stopping) {
    let _running = stopping.running();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopping.requested() => return,
            _ = sweep.tick() => presence.update(|state, effects| state.sweep(Instant::now(), effects)),
            event = events.recv() => match event {
                Ok(event) if is_presence(&event) => {
                    presence.metrics.presence_events_received.fetch_add(1, Ordering::Relaxed);
                    presence.update(|state, effects| state.receive(event, Instant::now(), effects));
                }
                Ok(_) => {}
                // Changes were missed: ask every node for its whole list.
                Err(RecvError::Lagged(_)) => presence.update(|state, effects| state.resync(Instant::now(), effects)),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Whether the sweep task should look at `event` (before taking the lock).
fn is_presence(event: &Ephemeral) -> bool {
    matches!(
        event,
        Ephemeral::NodePresence { .. } | Ephemeral::PresenceHeartbeat { .. } | Ephemeral::PresenceSync { .. }
    )
}

/// What a state change asks for: events for the bus, changes to announce.
#[derive(Default)]
struct Effects {
    publish: Vec<Ephemeral>,
    announce: Vec<PresenceChange>,
}

/// The whole view, behind one lock held for microseconds; every method
/// takes the time, so tests drive the clock.
struct State {
    node: u64,
    /// Whether other nodes exist to tell (else nothing is published).
    clustered: bool,
    /// This node's users, while they have a socket or are in their grace.
    local: HashMap<Username, Local>,
    /// Last closes, oldest first: the sweep finds ended graces at the front.
    closing: VecDeque<(Instant, Username)>,
    /// Other nodes, by id, as last heard.
    remote: HashMap<u64, Remote>,
    /// How many nodes (this one included) count each online user.
    tally: Tally,
    /// The number of this node's latest `NodePresence`.
    seq: u64,
    /// Regular heartbeats sent.
    beats: u64,
    next_beat: Instant,
}

struct Local {
    sockets: u32,
    /// When the last socket closed, while none is open.
    idle_since: Option<Instant>,
}

struct Remote {
    heard: Instant,
    users: HashSet<Username>,
    /// The number of the node's latest change applied here.
    seq: u64,
    /// Whether `users` is known complete (a full list, and no change missed since).
    synced: bool,
    /// When its full list was last asked for.
    asked: Option<Instant>,
}

/// Online users and how many nodes count each.
#[derive(Default)]
struct Tally(HashMap<Username, u32>);

impl Tally {
    fn is_online(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    fn up(&mut self, user: &Username, effects: &mut Effects) {
        match self.0.get_mut(user.as_str()) {
            Some(nodes) => *nodes += 1,
            None => {
                self.0.insert(user.clone(), 1);
                effects.announce.push(PresenceChange { user: user.clone(), online: true });
            }
        }
    }

    fn down(&mut self, user: &str, effects: &mut Effects) {
        let Some(nodes) = self.0.get_mut(user) else { return };
        *nodes -= 1;
        if *nodes == 0 {
            if let Some((user, _)) = self.0.remove_entry(user) {
                effects.announce.push(PresenceChange { user, online: false });
            }
        }
    }
}

impl State {
    fn new(node: u64, clustered: bool, now: Instant) -> State {
        State {
            node,
            clustered,
            local: HashMap::new(),
            closing: VecDeque::new(),
            remote: HashMap::new(),
            tally: Tally::default(),
            seq: 0,
            beats: 0,
            next_beat: now,
        }
    }

    fn open(&mut self, user: &Username, effects: &mut Effects) {
        if let Some(local) = self.local.get_mut(user.as_str()) {
            local.sockets += 1;
            local.idle_since = None; // a reconnect within the grace: nothing to say
            return;
        }
        self.local.insert(user.clone(), Local { sockets: 1, idle_since: None });
        self.tally.up(user, effects);
        self.tell_others(user, true, effects);
    }

    fn close(&mut self, user: &Username, now: Instant) {
        let Some(local) = self.local.get_mut(user.as_str()) else { return };
        local.sockets = local.sockets.saturating_sub(1);
        if local.sockets == 0 {
            local.idle_since = Some(now);
            self.closing.push_back((now, user.clone()));
        }
    }

    fn tell_others(&mut self, user: &Username, online: bool, effects: &mut Effects) {
        if self.clustered {
            self.seq += 1;
            effects.publish.push(Ephemeral::NodePresence {
                node: self.node,
                seq: self.seq,
                user: user.clone(),
                online,
            });
        }
    }

    /// The timed work: ended graces, silent nodes, this node's heartbeat.
    fn sweep(&mut self, now: Instant, effects: &mut Effects) {
        while let Some((closed, _)) = self.closing.front() {
            if now.saturating_duration_since(*closed) < GRACE {
                break;
            }
            let (closed, user) = self.closing.pop_front().expect("just looked at it");
            // A reconnect since, or a later close with its own entry: not this one's turn.
            let ended = self.local.get(user.as_str()).is_some_and(|l| l.sockets == 0 && l.idle_since == Some(closed));
            if ended {
                self.local.remove(user.as_str());
                self.tally.down(&user, effects);
                self.tell_others(&user, false, effects);
            }
        }
        let silent: Vec<u64> = self
            .remote
            .iter()
            .filter(|(_, node)| now.saturating_duration_since(node.heard) >= NODE_EXPIRY)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            let node = self.remote.remove(&id).expect("just found");
            tracing::info!(
                node = format_args!("{id:016x}"),
                users = node.users.len(),
                "a node went silent; its users are offline"
            );
            for user in &node.users {
                self.tally.down(user, effects);
            }
        }
        if self.clustered && now >= self.next_beat {
            self.next_beat = now + HEARTBEAT_EVERY;
            let full = self.beats.is_multiple_of(FULL_EVERY);
            self.beats += 1;
            self.heartbeat(full, effects);
        }
    }

    /// This node's heartbeat, with its whole list when `full`.
    fn heartbeat(&self, full: bool, effects: &mut Effects) {
        effects.publish.push(Ephemeral::PresenceHeartbeat {
            node: self.node,
            seq: self.seq,
            online: self.local.len() as u32,
            users: full.then(|| self.local.keys().cloned().collect()),
        });
    }

    /// Another node's presence event.
    fn receive(&mut self, event: Ephemeral, now: Instant, effects: &mut Effects) {
        match event {
            Ephemeral::NodePresence { node, seq, user, online } if node != self.node => {
                let remote = self.remote.entry(node).or_insert_with(|| Remote::new(now));
                remote.heard = now;
                let in_order = remote.synced && seq == remote.seq + 1;
                remote.seq = remote.seq.max(seq);
                if online {
                    if !remote.users.contains(user.as_str()) {
                        self.tally.up(&user, effects);
                        remote.users.insert(user);
                    }
                } else if remote.users.remove(user.as_str()) {
                    self.tally.down(&user, effects);
                }
                if !in_order {
                    ask_for_list(self.node, node, remote, now, effects);
                }
            }
            Ephemeral::PresenceHeartbeat { node, seq, online, users } if node != self.node => {
                let remote = self.remote.entry(node).or_insert_with(|| Remote::new(now));
                remote.heard = now;
                match users {
                    Some(users) => {
                        let users: HashSet<Username> = users.into_iter().collect();
                        for gone in remote.users.difference(&users) {
                            self.tally.down(gone, effects);
                        }
                        for came in users.difference(&remote.users) {
                            self.tally.up(came, effects);
                        }
                        *remote = Remote { heard: now, users, seq, synced: true, asked: None };
                    }
                    None if remote.synced && remote.seq == seq && remote.users.len() == online as usize => {}
                    None => ask_for_list(self.node, node, remote, now, effects),
                }
            }
            // Answered at once: each asker asks at most every SYNC_AGAIN_AFTER.
            Ephemeral::PresenceSync { of, .. } if of == self.node && self.clustered => self.heartbeat(true, effects),
            _ => {}
        }
    }

    /// After missing events: every node's whole list again.
    fn resync(&mut self, now: Instant, effects: &mut Effects) {
        for (id, remote) in &mut self.remote {
            ask_for_list(self.node, *id, remote, now, effects);
        }
    }
}

impl Remote {
    fn new(now: Instant) -> Remote {
        Remote { heard: now, users: HashSet::new(), seq: 0, synced: false, asked: None }
    }
}

/// Asks node `of` for its whole list, unless that was just done.
fn ask_for_list(node: u64, of: u64, remote: &mut Remote, now: Instant, effects: &mut Effects) {
    remote.synced = false;
    if remote.asked.is_some_and(|asked| now.saturating_duration_since(asked) < SYNC_AGAIN_AFTER) {
        return;
    }
    remote.asked = Some(now);
    effects.publish.push(Ephemeral::PresenceSync { node, of });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 1;
    const OTHER: u64 = 7;

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    fn change(user: &str, online: bool) -> PresenceChange {
        PresenceChange { user: name(user), online }
    }

    /// A cluster node's state and a clock the test moves.
    struct Clock {
        state: State,
        start: Instant,
        now: Instant,
    }

    impl Clock {
        fn new(clustered: bool) -> Clock {
            let start = Instant::now();
            Clock { state: State::new(ME, clustered, start), start, now: start }
        }

        fn at(&mut self, seconds: f64) -> &mut Clock {
            self.now = self.start + Duration::from_secs_f64(seconds);
            self
        }

        fn open(&mut self, user: &str) -> Effects {
            let mut effects = Effects::default();
            self.state.open(&name(user), &mut effects);
            effects
        }

        fn close(&mut self, user: &str) {
            self.state.close(&name(user), self.now);
        }

        fn sweep(&mut self) -> Effects {
            let mut effects = Effects::default();
            self.state.sweep(self.now, &mut effects);
            effects
        }

        fn receive(&mut self, event: Ephemeral) -> Effects {
            let mut effects = Effects::default();
            self.state.receive(event, self.now, &mut effects);
            effects
        }

        /// Sweeps every second from `from` to `to` seconds; the changes
        /// announced, with when.
        fn sweep_through(&mut self, from: u64, to: u64) -> Vec<(u64, PresenceChange)> {
            let mut announced = Vec::new();
            for second in from..=to {
                self.at(second as f64);
                announced.extend(self.sweep().announce.into_iter().map(|c| (second, c)));
            }
            announced
        }
    }

    fn presence_of(effects: &Effects) -> Vec<(String, bool)> {
        effects
            .publish
            .iter()
            .filter_map(|event| match event {
                Ephemeral::NodePresence { user, online, .. } => Some((user.to_string(), *online)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_first_socket_announces_online_at_once_and_tells_the_other_nodes() {
        let mut clock = Clock::new(true);
        let first = clock.open("ann");
        assert_eq!(first.announce, vec![change("ann", true)]);
        assert_eq!(presence_of(&first), vec![("ann".to_owned(), true)]);
        let second = clock.open("ann");
        assert!(second.announce.is_empty() && second.publish.is_empty(), "a second tab changes nothing");
        assert!(clock.state.tally.is_online("ann"));
    }

    #[test]
    fn going_offline_is_announced_between_5_and_15_seconds_after_the_last_socket_closed() {
        let mut clock = Clock::new(true);
        clock.open("ann");
        clock.open("ann");
        clock.at(0.3).close("ann");
        clock.at(0.7).close("ann");
        let announced = clock.sweep_through(1, 20);
        assert_eq!(announced.len(), 1, "{announced:?}");
        let (second, offline) = &announced[0];
        assert_eq!(offline, &change("ann", false));
        assert!((5.7..=15.7).contains(&(*second as f64)), "offline {second} s in, closed at 0.7 s");
        assert!(!clock.state.tally.is_online("ann"));
        assert!(clock.state.local.is_empty() && clock.state.closing.is_empty(), "nothing is kept for the gone");
    }

    #[test]
    fn the_other_nodes_hear_of_the_offline_only_after_the_grace() {
        let mut clock = Clock::new(true);
        clock.open("ann");
        clock.at(0.5).close("ann");
        for second in 1..=5 {
            assert!(presence_of(&clock.at(second as f64).sweep()).is_empty(), "told at {second} s");
        }
        assert_eq!(presence_of(&clock.at(6.0).sweep()), vec![("ann".to_owned(), false)]);
    }

    #[test]
    fn a_reconnect_within_5_seconds_announces_nothing() {
        let mut clock = Clock::new(true);
        clock.open("ann");
        clock.at(1.0).close("ann");
        clock.sweep_through(1, 4);
        let reopened = clock.at(4.9).open("ann");
        assert!(reopened.announce.is_empty() && reopened.publish.is_empty());
        let later = clock.sweep_through(5, 30);
        assert!(later.is_empty(), "{later:?}");
        assert!(clock.state.tally.is_online("ann"));
        // It closes again: the grace starts over from this close.
        clock.at(30.5).close("ann");
        let announced = clock.sweep_through(31, 40);
        assert_eq!(announced, vec![(36, change("ann", false))]);
    }

    #[test]
    fn a_user_on_two_nodes_stays_online_while_either_counts_them() {
        let mut clock = Clock::new(true);
        let heard = clock.receive(Ephemeral::NodePresence { node: OTHER, seq: 1, user: name("ann"), online: true });
        assert_eq!(heard.announce, vec![change("ann", true)]);
        assert!(clock.open("ann").announce.is_empty(), "already online elsewhere");
        clock.at(0.5).close("ann");
        assert!(clock.sweep_through(1, 10).is_empty(), "the other node still counts ann");
        let gone = clock.receive(Ephemeral::NodePresence { node: OTHER, seq: 2, user: name("ann"), online: false });
        assert_eq!(gone.announce, vec![change("ann", false)]);
    }

    #[test]
    fn a_silent_node_takes_its_users_offline_within_30_seconds() {
        let mut clock = Clock::new(true);
        clock.receive(Ephemeral::PresenceHeartbeat {
            node: OTHER,
            seq: 0,
            online: 2,
            users: Some(vec![name("ann"), name("bob")]),
        });
        clock.open("bob");
        // Its last heartbeat, at 2 s; then nothing.
        clock.at(2.0).receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 0, online: 2, users: None });
        let announced = clock.sweep_through(3, 40);
        assert_eq!(announced.len(), 1, "{announced:?}");
        let (second, offline) = &announced[0];
        assert_eq!(offline, &change("ann", false), "bob is still here");
        assert!((2 + 20..=2 + 28).contains(second), "expired at {second} s");
        assert!(clock.state.remote.is_empty(), "a dead node is forgotten");
    }

    #[test]
    fn a_node_that_started_late_learns_everyone_from_the_next_full_heartbeat() {
        let mut clock = Clock::new(true);
        // A thin heartbeat from a node never heard: ask for its list.
        let thin = clock.receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 40, online: 2, users: None });
        assert_eq!(thin.publish, vec![Ephemeral::PresenceSync { node: ME, of: OTHER }]);
        assert!(thin.announce.is_empty());
        let again =
            clock.at(3.0).receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 40, online: 2, users: None });
        assert!(again.publish.is_empty(), "asked once per SYNC_AGAIN_AFTER");
        let full = clock.at(6.0).receive(Ephemeral::PresenceHeartbeat {
            node: OTHER,
            seq: 40,
            online: 2,
            users: Some(vec![name("ann"), name("bob")]),
        });
        let mut came: Vec<_> = full.announce.iter().map(|c| (c.user.to_string(), c.online)).collect();
        came.sort();
        assert_eq!(came, vec![("ann".to_owned(), true), ("bob".to_owned(), true)]);
        // In order from then on: no more asking.
        let next = clock.receive(Ephemeral::NodePresence { node: OTHER, seq: 41, user: name("cid"), online: true });
        assert_eq!((next.announce, next.publish), (vec![change("cid", true)], vec![]));
        // A full list that lacks someone takes them offline.
        let full = clock.at(9.0).receive(Ephemeral::PresenceHeartbeat {
            node: OTHER,
            seq: 42,
            online: 2,
            users: Some(vec![name("bob"), name("cid")]),
        });
        assert_eq!(full.announce, vec![change("ann", false)]);
    }

    #[test]
    fn a_missed_change_is_noticed_and_the_full_list_asked_for() {
        let mut clock = Clock::new(true);
        clock.receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 3, online: 0, users: Some(vec![]) });
        let skipped = clock.receive(Ephemeral::NodePresence { node: OTHER, seq: 5, user: name("ann"), online: true });
        assert_eq!(skipped.announce, vec![change("ann", true)], "applied all the same");
        assert_eq!(skipped.publish, vec![Ephemeral::PresenceSync { node: ME, of: OTHER }]);
        // A heartbeat whose number is ahead says the same.
        let mut clock = Clock::new(true);
        clock.receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 3, online: 0, users: Some(vec![]) });
        let behind = clock.receive(Ephemeral::PresenceHeartbeat { node: OTHER, seq: 4, online: 1, users: None });
        assert_eq!(behind.publish, vec![Ephemeral::PresenceSync { node: ME, of: OTHER }]);
    }

    #[test]
    fn heartbeats_carry_the_full_list_first_then_every_tenth_and_at_once_when_asked() {
        let mut clock = Clock::new(true);
        clock.open("ann");
        let lists: Vec<Option<usize>> = (0..=(FULL_EVERY * 3 + 1))
            .filter_map(|second| {
                clock.at(second as f64).sweep().publish.into_iter().find_map(|event| match event {
                    Ephemeral::PresenceHeartbeat { users, .. } => Some(users.map(|u| u.len())),
                    _ => None,
                })
            })
            .collect();
        assert_eq!(lists.len() as u64, FULL_EVERY + 1, "one heartbeat every 3 s");
        assert_eq!(lists[0], Some(1));
        assert!(lists[1..FULL_EVERY as usize].iter().all(Option::is_none));
        assert_eq!(lists[FULL_EVERY as usize], Some(1));
        // Asked by another node: a full one at once.
        let asked = clock.receive(Ephemeral::PresenceSync { node: OTHER, of: ME }).publish;
        assert!(matches!(&asked[..], [Ephemeral::PresenceHeartbeat { users: Some(_), .. }]), "{asked:?}");
        let not_me = clock.receive(Ephemeral::PresenceSync { node: OTHER, of: 99 }).publish;
        assert!(not_me.is_empty(), "{not_me:?}");
    }

    #[test]
    fn a_node_ignores_its_own_events_coming_back_on_its_bus() {
        let mut clock = Clock::new(true);
        let own = clock.receive(Ephemeral::NodePresence { node: ME, seq: 1, user: name("ann"), online: true });
        assert!(own.announce.is_empty() && own.publish.is_empty());
        assert!(clock.state.remote.is_empty());
    }

    #[test]
    fn a_single_node_tells_nobody() {
        let mut clock = Clock::new(false);
        assert!(clock.open("ann").publish.is_empty());
        clock.at(1.0).close("ann");
        let all: Vec<Ephemeral> = (0..10).flat_map(|s| clock.at(s as f64).sweep().publish).collect();
        assert!(all.is_empty(), "{all:?}");
        assert!(!clock.state.tally.is_online("ann"));
    }

    #[test]
    fn a_heartbeat_of_2000_users_stays_small() {
        let mut clock = Clock::new(true);
        for i in 0..2000 {
            clock.open(&format!("user.{i:04}@example"));
        }
        let publish = clock.sweep().publish;
        let full = serde_json::to_vec(&publish[0]).unwrap();
        let thin = serde_json::to_vec(&clock.at(3.0).sweep().publish[0]).unwrap();
        println!("heartbeat for 2000 users of 17 characters: full {} bytes, thin {} bytes", full.len(), thin.len());
        assert!(full.len() < 2000 * 24, "{} bytes", full.len());
        assert!(thin.len() < 128, "{} bytes", thin.len());
    }

    /// Socket tasks hold a guard across awaits, on any worker thread.
    const _: fn() = || {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<PresenceGuard>();
        send_and_sync::<Presence>();
    };

    #[tokio::test]
    async fn sockets_of_a_single_node_make_it_online_at_once_for_every_listener() {
        let (_control, stopping) = crate::shutdown::channel();
        let presence = Presence::start(EphemeralBus::local(), ME, Arc::default(), stopping);
        let mut changes = presence.changes();
        let guard = presence.socket_opened(&name("ann"));
        let second = presence.socket_opened(&name("ann"));
        assert_eq!(changes.try_recv().unwrap(), change("ann", true));
        assert!(changes.try_recv().is_err(), "announced once");
        assert!(presence.is_online("ann") && !presence.is_online("bob"));
        assert_eq!(presence.online_among(["bob", "ann", "cid"].into_iter()), vec!["ann".to_owned()]);
        drop(guard);
        drop(second);
        assert!(presence.is_online("ann"), "online through the grace");
    }
}
