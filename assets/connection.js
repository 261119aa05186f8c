/* chatctl conversation socket: one room or direct chat's WebSocket with its
 * reconnects (exponential backoff with jitter, resuming with `since=`), the
 * connection pill, and the sign-in check that a refused upgrade needs (its
 * 401 is invisible to scripts). The view (conversation.js) gets every text
 * frame with the generation of the socket it came on. */
import { sessionEnded, toLogin, isLeavingForLogin, wsUrl, backoffDelay } from './util.js';

const STABLE_AFTER_MS = 10000; // an open socket this long resets the backoff

export class Connection {
  /** `since()`: the id to resume after, or null; `onFrame(raw, gen)`: every text frame. */
  constructor(path, { statusEl, since, onFrame }) {
    this.path = path;
    this.statusEl = statusEl;
    this.since = since;
    this.onFrame = onFrame;
    this.ws = null;
    this.generation = 0;        // bumps on every connect
    this.activeGen = 0;         // generation of the open socket, 0 if none
    this.attempt = 0;
    this.needAuthCheck = false;
    this.leaving = false;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.stableTimer = null;
    this.wire();
  }

  setStatus(state, text) {
    this.statusEl.dataset.state = state;
    this.statusEl.textContent = text;
  }

  connect() {
    this.clearRetry();
    if (this.ws || this.leaving || isLeavingForLogin()) return;
    const gen = ++this.generation;
    this.setStatus(this.attempt ? 'reconnecting' : 'connecting', this.attempt ? 'Reconnecting…' : 'Connecting…');

    const since = this.since();
    let url = wsUrl(this.path);
    if (since !== null) url += '?since=' + encodeURIComponent(since);

    let sock;
    try {
      sock = new WebSocket(url);
    } catch {
      this.needAuthCheck = true;
      this.scheduleReconnect();
      return;
    }
    this.ws = sock;
    let opened = false;

    sock.onopen = () => {
      if (this.ws !== sock) return;
      opened = true;
      this.activeGen = gen;
      this.setStatus('online', 'Connected');
      this.stableTimer = setTimeout(() => { this.attempt = 0; }, STABLE_AFTER_MS);
    };
    sock.onmessage = (event) => {
      if (this.ws === sock && typeof event.data === 'string') this.onFrame(event.data, gen);
    };
    // Every other close (1001 going away, 1008 slow consumer, 1006 network)
    // gets the same treatment: back off and resume from `since`.
    sock.onclose = (event) => {
      if (this.ws !== sock) return;
      this.ws = null;
      this.activeGen = 0;
      clearTimeout(this.stableTimer);
      const ended = sessionEnded(event);
      if (ended) {
        toLogin(ended); // the page then hears chatctl:signed-out
        return;
      }
      // A socket that never opened may mean the session ended: the upgrade's
      // 401 is invisible to scripts, so ask /api/me before trying again.
      this.needAuthCheck = !opened;
      if (!this.leaving) this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    this.clearRetry();
    if (this.leaving) return;
    if (navigator.onLine === false) {
      this.setStatus('offline', 'Offline'); // the `online` event reconnects
      return;
    }
    const delay = backoffDelay(this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    const due = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      this.setStatus('reconnecting', `Reconnecting in ${s}s`);
    };
    tick();
    this.countdownTimer = setInterval(tick, 250);
    this.retryTimer = setTimeout(() => this.reconnect(), delay);
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdownTimer);
    this.retryTimer = null;
    this.countdownTimer = null;
  }

  async reconnect() {
    this.clearRetry();
    if (this.ws || this.leaving) return;
    if (this.needAuthCheck) {
      this.setStatus('reconnecting', 'Reconnecting…');
      try {
        const res = await fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 401) {
          this.leaving = true;
          toLogin();
          return;
        }
      } catch {
        // Network trouble: the socket attempt will fail too and back off.
      }
    }
    this.connect();
  }

  /** Sends a frame on the open socket; false when there is none. */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.activeGen === 0) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Drops the open socket on purpose; the normal reconnect path resumes. */
  restart() {
    if (this.ws) this.ws.close(4000, 'history fetch failed');
  }

  /** Closes for good (the page is going away, or the session ended). */
  stop() {
    this.leaving = true;
    this.clearRetry();
    if (this.ws) {
      const sock = this.ws;
      this.ws = null;
      this.activeGen = 0;
      sock.close(1000);
    }
  }

  wire() {
    // Coming back online or to the tab should not wait out a long backoff.
    window.addEventListener('online', () => {
      if (!this.ws) this.reconnect();
    });
    window.addEventListener('offline', () => {
      if (!this.ws) {
        this.clearRetry();
        this.setStatus('offline', 'Offline');
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !this.ws) this.reconnect();
    });
    // Leaving the page must not look like a dropped connection; a page restored
    // from the back/forward cache picks up where it left off.
    window.addEventListener('pagehide', () => this.stop());
    window.addEventListener('chatctl:signed-out', () => {
      this.stop();
      this.setStatus('offline', 'Signed out');
    });
    window.addEventListener('pageshow', (event) => {
      if (!event.persisted || isLeavingForLogin()) return;
      this.leaving = false;
      this.attempt = 0;
      this.reconnect();
    });
  }
}
