/* chatctl inbox: the user socket `/ws/user/` (PROTOCOL.md "The user socket")
 * and what it feeds: every conversation with its unread count, who is
 * online, the page title's "(N)", the favicon badge and desktop
 * notifications. Pages listen for its `change` event and render from
 * `inbox.conversations()`. */
import {
  me, describeRoom, conversationUrl, conversationLabel, idAbove, isChatFrame, sessionEnded,
  toLogin, isLeavingForLogin, wsUrl, backoffDelay,
} from './util.js';

const UNREAD_CAP = 99; // the server's counts are exact up to 99
const STABLE_AFTER_MS = 10000;

export class Inbox extends EventTarget {
  constructor() {
    super();
    /** room -> {kind, name, room, latest, readUpTo, unread, unreadIds:Set} */
    this.convs = new Map();
    this.online = new Set();
    this.loaded = false;
    /** The conversation this page shows (its `room`), if any. */
    this.current = null;
    this.currentVisible = () => false;
    this.ws = null;
    this.attempt = 0;
    this.retry = null;
    this.stable = null;
    this.baseTitle = document.title;
    this.badge = new FaviconBadge();
    this.notifier = new Notifier(this);
    window.addEventListener('online', () => { if (!this.ws) this.connect(); });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !this.ws) this.connect();
    });
    window.addEventListener('pagehide', () => this.close());
    window.addEventListener('pageshow', (e) => { if (e.persisted) this.connect(); });
    window.addEventListener('chatctl:signed-out', () => this.close());
  }

  connect() {
    clearTimeout(this.retry);
    if (this.ws || isLeavingForLogin()) return;
    const sock = new WebSocket(wsUrl('/ws/user/'));
    this.ws = sock;
    let opened = false;
    sock.onopen = () => {
      opened = true;
      this.stable = setTimeout(() => { this.attempt = 0; }, STABLE_AFTER_MS);
    };
    sock.onmessage = (event) => {
      if (this.ws !== sock || typeof event.data !== 'string') return;
      let f;
      try {
        f = JSON.parse(event.data);
      } catch {
        return;
      }
      if (f && typeof f === 'object') this.onFrame(f);
    };
    sock.onclose = (event) => {
      if (this.ws !== sock) return;
      this.ws = null;
      clearTimeout(this.stable);
      const ended = sessionEnded(event);
      if (ended) {
        toLogin(ended);
        return;
      }
      if (isLeavingForLogin()) return;
      // A socket that never opened may mean the session ended (the upgrade's
      // 401 is invisible to scripts): /api/me tells.
      if (!opened) {
        fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' })
          .then((res) => { if (res.status === 401) toLogin(); })
          .catch(() => {});
      }
      this.retry = setTimeout(() => this.connect(), backoffDelay(this.attempt));
      this.attempt = Math.min(this.attempt + 1, 16);
    };
  }

  close() {
    clearTimeout(this.retry);
    if (this.ws) {
      const sock = this.ws;
      this.ws = null;
      sock.close(1000);
    }
  }

  /** Sends a frame if the socket is open; false otherwise. */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  onFrame(f) {
    switch (f.type) {
      case 'inbox': this.onInbox(f); break;
      case 'chat_handler': this.onMessage(f); break;
      case 'edit': this.onEdit(f); break;
      case 'delete': this.onDelete(f); break;
      case 'read': this.onRead(f); break;
      case 'presence': this.onPresence(f); break;
      default: return;
    }
  }

  onInbox(f) {
    const convs = Array.isArray(f.conversations) ? f.conversations : [];
    this.convs.clear();
    for (const c of convs) {
      if (!c || typeof c.room !== 'string' || typeof c.name !== 'string') continue;
      if (c.kind !== 'room' && c.kind !== 'direct') continue;
      this.convs.set(c.room, {
        kind: c.kind,
        name: c.name,
        room: c.room,
        latest: isChatFrame(c.latest) ? c.latest : null,
        readUpTo: typeof c.read_up_to === 'string' ? c.read_up_to : null,
        unread: Number.isInteger(c.unread) && c.unread > 0 ? c.unread : 0,
        unreadIds: new Set(),
      });
    }
    this.online = new Set(Array.isArray(f.online) ? f.online.filter((u) => typeof u === 'string') : []);
    this.loaded = true;
    this.changed();
  }

  /** The conversation of a frame's `room`, made when it is new to us. */
  conv(room) {
    let c = this.convs.get(room);
    if (!c) {
      const d = describeRoom(room);
      if (!d) return null;
      c = { ...d, room, latest: null, readUpTo: null, unread: 0, unreadIds: new Set() };
      this.convs.set(room, c);
    }
    return c;
  }

  onMessage(f) {
    if (!isChatFrame(f)) return;
    const c = this.conv(f.room);
    if (!c) return;
    if (c.latest && !idAbove(f.id, c.latest.id)) return; // a repeat after a reconnect
    c.latest = f;
    // Move it to the front: most recent activity first.
    this.convs.delete(f.room);
    this.convs = new Map([[f.room, c], ...this.convs]);
    if (f.author === me) {
      c.readUpTo = f.id; // posting moves the sender's own marker
      c.unread = 0;
      c.unreadIds.clear();
    } else if (this.current === f.room && this.currentVisible()) {
      // On screen: the conversation view marks it read at once.
    } else if (idAbove(f.id, c.readUpTo)) {
      c.unreadIds.add(f.id);
      c.unread = Math.min(UNREAD_CAP, c.unread + 1);
      this.notifier.consider(c, f);
    }
    this.changed();
    this.dispatchEvent(new CustomEvent('message', { detail: f }));
  }

  onEdit(f) {
    const c = this.convs.get(f.room);
    if (c && c.latest && c.latest.id === f.target && typeof f.message === 'string') {
      c.latest = { ...c.latest, message: f.message, edited: f.ts };
      this.changed();
    }
  }

  onDelete(f) {
    const c = this.convs.get(f.room);
    if (!c) return;
    if (c.unreadIds.delete(f.target)) c.unread = Math.max(0, c.unread - 1);
    if (c.latest && c.latest.id === f.target) c.latest = { ...c.latest, message: '', deleted: true };
    this.changed();
  }

  onRead(f) {
    if (typeof f.up_to !== 'string') return;
    const c = this.convs.get(f.room);
    if (!c || !idAbove(f.up_to, c.readUpTo)) return;
    c.readUpTo = f.up_to;
    if (!c.latest || !idAbove(c.latest.id, f.up_to)) {
      c.unread = 0;
      c.unreadIds.clear();
    } else {
      for (const id of c.unreadIds) {
        if (!idAbove(id, f.up_to)) {
          c.unreadIds.delete(id);
          c.unread = Math.max(0, c.unread - 1);
        }
      }
    }
    this.changed();
    this.dispatchEvent(new CustomEvent('read', { detail: f }));
  }

  onPresence(f) {
    if (typeof f.user !== 'string' || typeof f.online !== 'boolean') return;
    if (f.online) this.online.add(f.user);
    else this.online.delete(f.user);
    this.changed();
  }

  /** Every conversation, most recent activity first. */
  conversations() {
    return [...this.convs.values()];
  }

  readUpTo(room) {
    const c = this.convs.get(room);
    return c ? c.readUpTo : null;
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }

  changed() {
    const n = this.totalUnread();
    document.title = n ? `(${n > UNREAD_CAP ? UNREAD_CAP + '+' : n}) ${this.baseTitle}` : this.baseTitle;
    this.badge.show(n);
    this.dispatchEvent(new Event('change'));
  }
}

export function unreadText(n) {
  return n >= UNREAD_CAP ? `${UNREAD_CAP}+` : String(n);
}

export { conversationUrl, conversationLabel };

/** Draws the favicon with a red count in its corner while anything is unread. */
class FaviconBadge {
  constructor() {
    this.link = document.querySelector('link[rel="icon"]');
    this.original = this.link ? this.link.href : null;
    this.image = null;
    this.shown = 0;
  }

  async show(n) {
    if (!this.link || n === this.shown) return;
    this.shown = n;
    if (!n) {
      this.link.type = 'image/svg+xml';
      this.link.href = this.original;
      return;
    }
    try {
      if (!this.image) {
        const img = new Image();
        img.src = '/static/favicon.svg';
        await img.decode();
        this.image = img;
      }
    } catch {
      return;
    }
    if (this.shown !== n) return; // a newer count is being drawn
    const size = 64;
    const canvas = document.createElement('canvas');
    canvas.width = size;
    canvas.height = size;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(this.image, 0, 0, size, size);
    const r = 19;
    ctx.beginPath();
    ctx.arc(size - r, r, r, 0, 2 * Math.PI);
    ctx.fillStyle = '#d92d20';
    ctx.fill();
    ctx.lineWidth = 4;
    ctx.strokeStyle = '#ffffff';
    ctx.stroke();
    ctx.fillStyle = '#ffffff';
    ctx.font = 'bold 26px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(n > 9 ? '9+' : String(n), size - r, r + 1);
    this.link.type = 'image/png';
    this.link.href = canvas.toDataURL('image/png');
  }
}

/** Desktop notifications for direct messages and @mentions while the tab is hidden. */
class Notifier {
  constructor(inbox) {
    this.inbox = inbox;
  }

  // Phone browsers only show notifications from a service worker (or not
  // at all): offering the button there would promise what cannot happen.
  static supported() {
    return 'Notification' in window && window.isSecureContext
      && !window.matchMedia('(hover: none) and (pointer: coarse)').matches;
  }

  static permission() {
    return Notifier.supported() ? Notification.permission : 'unsupported';
  }

  /** Asks for permission; call only from a user gesture (a click). */
  static async request() {
    if (!Notifier.supported()) return 'unsupported';
    try {
      return await Notification.requestPermission();
    } catch {
      return Notification.permission;
    }
  }

  consider(c, f) {
    if (!document.hidden || Notifier.permission() !== 'granted') return;
    const mention = me && new RegExp(`(^|[^A-Za-z0-9_.@+-])@${escapeRe(me)}(?![A-Za-z0-9_@+-]|\\.[A-Za-z0-9_@+-])`, 'i')
      .test(f.message);
    if (c.kind !== 'direct' && !mention) return;
    const title = c.kind === 'direct' ? `${f.author}` : `${f.author} in ${conversationLabel(c.kind, c.name)}`;
    const body = f.message.length > 200 ? f.message.slice(0, 200) + '…' : f.message;
    try {
      const n = new Notification(title, { body, tag: c.room, icon: '/static/favicon.svg' });
      n.onclick = () => {
        window.focus();
        n.close();
        if (this.inbox.current !== c.room) location.assign(conversationUrl(c.kind, c.name));
      };
    } catch {
      // Some browsers only allow notifications from a service worker.
    }
  }
}

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export { Notifier };
