/* chatctl conversation view: one room or direct chat over its own socket
 * (connection.js; PROTOCOL.md "WebSocket" and "The chat app"). The socket
 * carries live frames; the history API fills gaps after a reconnect and pages
 * back as the user scrolls up. Also: read markers, typing, presence, and
 * applying edits and deletions (message-actions.js makes them).
 * Untrusted text (messages, names) only ever reaches the DOM via textContent. */
import {
  el, me, isChatFrame, idAbove, shortTime, longTime, dayLabel, linkify, presenceDot, getJson, directRoom,
  randomId,
} from './util.js';
import { Connection } from './connection.js';
import { MessageActions } from './message-actions.js';

const MAX_CHARS = 4096;              // server limit, in Unicode scalar values
const COUNT_FROM = MAX_CHARS - 300;  // show a counter only when it matters
const PAGE_LIMIT = 500;              // largest page the history API returns
const INITIAL_HISTORY = 50;          // history frame size without ?since
const OLDER_PAGE = 50;
const NOTICE_MS = 6000;
const GROUP_GAP_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 80;
const LOAD_OLDER_PX = 300;           // this close to the top, the previous page loads
const TYPING_SHOW_MS = 6000;         // PROTOCOL.md "Typing"
const TYPING_SEND_MS = 2000;
const READ_DEBOUNCE_MS = 400;

/** The conversation the page's path names, or null. */
export function conversationFromPath(path) {
  const m = /^\/(chat|direct)\/([^/]+)\/?$/.exec(path);
  if (!m) return null;
  let name;
  try {
    name = decodeURIComponent(m[2]);
  } catch {
    return null;
  }
  const enc = encodeURIComponent(name);
  return m[1] === 'chat'
    ? { kind: 'room', name, room: name, ws: `/ws/chat/${enc}/`, api: `/api/rooms/${enc}/messages` }
    : { kind: 'direct', name, room: directRoom(me, name), ws: `/ws/direct/${enc}/`, api: `/api/direct/${enc}/messages` };
}

export class ConversationView {
  constructor(conv, inbox) {
    this.conv = conv;
    this.inbox = inbox;
    const $ = (id) => document.getElementById(id);
    this.list = $('messages');
    this.scroller = $('scroller');
    this.input = $('message-input');
    this.composer = $('composer');
    this.noticeEl = $('notice');
    this.newBtn = $('new-messages');
    this.olderBtn = $('load-older');
    this.countEl = $('char-count');
    this.typingEl = $('typing');
    this.presenceEl = $('presence');

    this.seen = new Set();      // message ids rendered or deleted: frames may repeat across reconnects
    this.deleted = new Set();
    this.cursor = null;         // newest id of any event applied (messages, edits, deletes): `since=`
    this.newestFromOthers = null;
    // While a `more` recovery pages through the history API, everything up to
    // this id is applied but later live frames may have jumped a gap, so a
    // reconnect resumes from here rather than from `cursor`.
    this.backfillCursor = null;
    // client_id -> {row, text, gen}. Map order is send order; pending rows sit
    // after all confirmed rows in the list, which keeps the binary search simple.
    this.pending = new Map();
    this.hasOlder = false;
    this.loadingOlder = false;

    this.noticeTimer = null;
    this.conn = new Connection(conv.ws, {
      statusEl: $('status'),
      since: () => (this.backfillCursor !== null ? this.backfillCursor : this.cursor),
      onFrame: (raw, gen) => this.onFrame(raw, gen),
    });
    this.actions = new MessageActions(this);

    this.online = null;         // Set of the conversation's online members, once known
    this.typing = new Map();    // user -> timer
    this.lastTypingSent = 0;
    this.readSent = null;
    this.readInFlight = null;   // sent, not yet confirmed by the user socket
    this.readTimer = null;
  }

  start() {
    this.wire();
    this.actions.wire();
    this.onInputChanged();
    this.conn.connect();
    // On a touch screen focus would pop the keyboard over the messages the
    // user came to read; there they tap the box when they want to write.
    if (!window.matchMedia('(hover: none) and (pointer: coarse)').matches) {
      this.input.focus({ preventScroll: true });
    }
    this.inbox.current = this.conv.room;
    this.inbox.currentVisible = () => this.canMarkRead();
    this.inbox.addEventListener('change', () => this.showPresence());
    this.inbox.addEventListener('read', (event) => {
      const f = event.detail;
      if (f.room === this.conv.room && !idAbove(this.readInFlight, f.up_to)) this.readInFlight = null;
    });
  }

  // ---------- Rendering ----------

  buildRow(m, isPending) {
    const li = el('li', 'msg');
    if (m.author === me) li.classList.add('mine');
    if (isPending) li.classList.add('pending');
    else li.dataset.id = m.id;
    li.dataset.author = m.author;

    const when = new Date(m.ts);
    const t = when.getTime();
    li.dataset.time = Number.isFinite(t) ? String(t) : '0';

    const time = el('time', 'time');
    if (isPending) {
      time.textContent = 'Sending…';
    } else if (Number.isFinite(t)) {
      time.dateTime = m.ts;
      time.textContent = shortTime(when);
      time.title = longTime(when);
    }

    const bubble = el('div', 'bubble');
    const text = el('p', 'text');
    text.append(linkify(m.message));
    const meta = el('div', 'meta');
    meta.append(time);
    const author = el('span', 'author', m.author);
    if (this.online && this.online.has(m.author)) author.classList.add('is-online');
    bubble.append(author, text, meta);
    const line = el('div', 'msg-line');
    line.append(bubble);
    li.append(line);
    if (typeof m.edited === 'string') this.markEdited(li, m.edited);
    if (!isPending) {
      const menuBtn = el('button', 'msg-menu-btn', '⋯');
      menuBtn.type = 'button';
      menuBtn.setAttribute('aria-label', 'Message actions');
      menuBtn.setAttribute('aria-haspopup', 'menu');
      menuBtn.setAttribute('aria-expanded', 'false');
      line.append(menuBtn);
    }
    return li;
  }

  markEdited(row, ts) {
    const meta = row.querySelector('.meta');
    let mark = meta.querySelector('.edited');
    if (!mark) {
      mark = el('span', 'edited', '(edited)');
      meta.prepend(mark);
    }
    const when = new Date(ts);
    mark.title = Number.isFinite(when.getTime()) ? `Edited ${longTime(when)}` : 'Edited';
  }

  // Consecutive messages from one author within a few minutes read as a
  // block; a new local day gets a separator above its first message.
  regroup(row) {
    if (!row) return;
    const prev = row.previousElementSibling;
    const same = !!prev && prev.dataset.author === row.dataset.author
      && Math.abs(Number(row.dataset.time) - Number(prev.dataset.time)) < GROUP_GAP_MS;
    const t = Number(row.dataset.time);
    const day = t ? new Date(t).toDateString() : '';
    const prevDay = prev && Number(prev.dataset.time) ? new Date(Number(prev.dataset.time)).toDateString() : '';
    const newDay = !!day && day !== prevDay && !row.classList.contains('pending');
    let sep = row.querySelector(':scope > .day-sep');
    if (newDay && !sep) {
      sep = el('div', 'day-sep');
      sep.setAttribute('role', 'separator');
      row.prepend(sep);
    } else if (!newDay && sep) {
      sep.remove();
    }
    if (sep && newDay) sep.textContent = dayLabel(new Date(t));
    row.classList.toggle('continued', same && !newDay);
  }

  removeRow(row) {
    const next = row.nextElementSibling;
    if (this.actions.menuRow === row) this.actions.closeMenu();
    row.remove();
    this.regroup(next);
  }

  removePending(key) {
    const p = this.pending.get(key);
    if (!p) return null;
    this.pending.delete(key);
    this.removeRow(p.row);
    return p;
  }

  // A stored copy of one of our own messages retires its pending row. The echo
  // names it by client_id; after a reconnect the history copy has no client_id,
  // so a message sent on an older socket is matched by its text instead.
  settlePending(m) {
    let key = null;
    if (typeof m.client_id === 'string' && this.pending.has(m.client_id)) {
      key = m.client_id;
    } else if (m.author === me) {
      for (const [k, p] of this.pending) {
        if (p.gen !== this.conn.activeGen && p.text === m.message) { key = k; break; }
      }
    }
    if (key !== null) this.removePending(key);
  }

  /** Inserts one message in id order; returns 'end', 'middle' or null (dupe). */
  insertMessage(m) {
    if (this.seen.has(m.id)) return null;
    this.seen.add(m.id);
    this.settlePending(m);

    const row = this.buildRow(m, false);
    // Confirmed rows are children[0 .. confirmed), sorted by id (ids sort as strings).
    const rows = this.list.children;
    const confirmed = rows.length - this.pending.size;
    let lo = 0;
    let hi = confirmed;
    if (confirmed > 0 && rows[confirmed - 1].dataset.id < m.id) {
      lo = confirmed; // the usual case: newer than everything shown
    } else {
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (rows[mid].dataset.id < m.id) lo = mid + 1;
        else hi = mid;
      }
    }
    this.list.insertBefore(row, rows[lo] || null);
    this.regroup(row);
    this.regroup(row.nextElementSibling);
    if (m.author !== me && idAbove(m.id, this.newestFromOthers)) this.newestFromOthers = m.id;
    return lo === confirmed ? 'end' : 'middle';
  }

  rowOf(id) {
    return this.list.querySelector(`li.msg[data-id="${CSS.escape(id)}"]`);
  }

  applyEdit(f) {
    if (typeof f.target !== 'string' || typeof f.message !== 'string') return;
    const row = this.rowOf(f.target);
    if (!row) return;
    const text = row.querySelector('.text');
    text.replaceChildren(linkify(f.message));
    this.markEdited(row, f.ts);
  }

  applyDelete(f) {
    if (typeof f.target !== 'string') return;
    this.seen.add(f.target);
    this.deleted.add(f.target);
    const row = this.rowOf(f.target);
    if (row) {
      const stick = this.isNearBottom();
      if (this.actions.editing && this.actions.editing.id === f.target) this.actions.cancelEdit();
      this.removeRow(row);
      if (stick) this.scrollToBottom();
    }
  }

  isNearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.newBtn.hidden = true;
  }

  /** Applies history entries or live frames in order. opts.older: a page
   *  prepended above the view (the caller keeps the view in place). */
  apply(items, opts = {}) {
    if (!items.length) return;
    const stick = this.isNearBottom();
    let grewAtEnd = false;
    for (const f of items) {
      if (!f || typeof f !== 'object' || typeof f.id !== 'string') continue;
      if (!opts.older && idAbove(f.id, this.cursor)) this.cursor = f.id;
      if (f.type === 'edit') {
        this.applyEdit(f);
      } else if (f.type === 'delete') {
        this.applyDelete(f);
      } else if (isChatFrame(f)) {
        if (this.insertMessage(f) === 'end') {
          grewAtEnd = true;
          this.clearTyping(f.author);
        }
      }
    }
    if (opts.older) return;
    if (stick) this.scrollToBottom();
    else if (grewAtEnd) this.newBtn.hidden = false;
    this.scheduleRead();
  }

  // ---------- Read markers ----------

  canMarkRead() {
    return document.visibilityState === 'visible' && this.isNearBottom();
  }

  // Debounced; only forwards, only when someone else wrote something newer
  // than the marker the inbox knows, and only while the user can see it.
  scheduleRead() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.sendRead(), READ_DEBOUNCE_MS);
  }

  sendRead() {
    if (!this.canMarkRead() || this.newestFromOthers === null) return;
    // The newest message still shown: a deleted one's id would be refused.
    const rows = this.list.children;
    const confirmed = rows.length - this.pending.size;
    const newest = confirmed > 0 ? rows[confirmed - 1].dataset.id : null;
    const marker = [this.readSent, this.inbox.readUpTo(this.conv.room)].reduce(
      (a, b) => (idAbove(b, a) ? b : a), null);
    if (!newest || !idAbove(this.newestFromOthers, marker) || !idAbove(newest, marker)) return;
    if (this.conn.send({ type: 'read', up_to: newest })) {
      this.readSent = newest;
      this.readInFlight = newest;
    }
  }

  /** A refused read (its message was deleted meanwhile) may be tried again. */
  readRefused() {
    this.readInFlight = null;
    this.readSent = null;
    this.scheduleRead();
  }

  // ---------- Presence and typing ----------

  onPresence(f) {
    if (Array.isArray(f.online)) {
      this.online = new Set(f.online.filter((u) => typeof u === 'string'));
    } else if (typeof f.user === 'string' && typeof f.online === 'boolean') {
      if (!this.online) this.online = new Set();
      if (f.online) this.online.add(f.user);
      else this.online.delete(f.user);
    } else {
      return;
    }
    this.showPresence();
  }

  // Direct chats: the OTHER person's state, from this socket's presence or
  // the user socket's (before their first message the other person may not
  // be a member yet, so only the user socket knows). Rooms: who is here.
  showPresence() {
    const p = this.presenceEl;
    if (this.conv.kind === 'direct') {
      const who = this.conv.name;
      if (!this.online && !this.inbox.loaded) return;
      const on = (!!this.online && this.online.has(who)) || (this.inbox.loaded && this.inbox.online.has(who));
      p.replaceChildren(presenceDot(on, who), el('span', '', on ? 'Online' : 'Offline'));
      p.dataset.online = String(on);
      p.hidden = false;
    } else if (this.online) {
      // A dot beside the names of people who are here now.
      for (const a of this.list.querySelectorAll('.author')) {
        a.classList.toggle('is-online', this.online.has(a.textContent));
      }
      const others = [...this.online].filter((u) => u !== me).sort();
      const n = others.length + 1;
      p.replaceChildren(presenceDot(true, 'You'), el('span', '', `${n} online`));
      p.firstChild.setAttribute('aria-hidden', 'true');
      p.title = others.length ? `Online: you, ${others.join(', ')}` : 'Only you are here';
      p.hidden = false;
    }
  }

  onTyping(f) {
    if (typeof f.user !== 'string' || f.user === me) return;
    clearTimeout(this.typing.get(f.user));
    this.typing.set(f.user, setTimeout(() => this.clearTyping(f.user), TYPING_SHOW_MS));
    this.showTyping();
  }

  clearTyping(user) {
    if (!this.typing.has(user)) return;
    clearTimeout(this.typing.get(user));
    this.typing.delete(user);
    this.showTyping();
  }

  showTyping() {
    const names = [...this.typing.keys()];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
    this.typingEl.textContent = text;
  }

  sendTyping() {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_MS || this.actions.editing) return;
    if (this.conn.send({ type: 'typing' })) this.lastTypingSent = now;
  }

  // ---------- Notices and the draft ----------

  showNotice(text, ms = NOTICE_MS) {
    this.noticeEl.textContent = text;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { this.noticeEl.textContent = ''; }, ms);
  }

  /** Puts unsent text back in the box, ahead of anything typed since. */
  restoreDraft(text) {
    const current = this.input.value;
    this.input.value = current.trim() ? text + '\n' + current : text;
    this.onInputChanged();
  }

  autosize() {
    const input = this.input;
    input.style.height = 'auto';
    const border = input.offsetHeight - input.clientHeight;
    input.style.height = input.scrollHeight + border + 'px';
  }

  onInputChanged() {
    this.autosize();
    const value = this.input.value;
    const n = value.length < COUNT_FROM ? 0 : [...value].length;
    this.countEl.textContent = n >= COUNT_FROM ? `${n}/${MAX_CHARS}` : '';
    this.countEl.classList.toggle('over', n > MAX_CHARS);
  }

  // ---------- Server frames ----------

  onFrame(raw, gen) {
    let f;
    try {
      f = JSON.parse(raw);
    } catch {
      return;
    }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'chat_handler':
      case 'edit':
      case 'delete':
        this.apply([f]);
        break;
      case 'history': this.onHistory(f, gen); break;
      case 'presence': this.onPresence(f); break;
      case 'typing': this.onTyping(f); break;
      case 'error': this.onServerError(f); break;
      default: break;
    }
  }

  onHistory(f, gen) {
    const items = Array.isArray(f.messages) ? f.messages : [];
    const since = this.backfillCursor !== null ? this.backfillCursor : this.cursor;
    const firstFill = since === null;
    this.apply(items);
    document.body.classList.add('loaded');
    // Without ?since the server sent only the newest messages; older ones may exist.
    if (firstFill) this.setHasOlder(items.filter(isChatFrame).length >= INITIAL_HISTORY);

    if (f.more === true) {
      this.backfillCursor = items.length ? items[items.length - 1].id : since;
      this.backfill(gen);
    } else {
      this.backfillCursor = null;
      this.settleLost(gen);
    }
  }

  /** Pages through `after=` until a short page: the history frame stops at 1,000. */
  async backfill(gen) {
    try {
      while (gen === this.conn.activeGen && this.backfillCursor !== null) {
        const page = await this.fetchMessages({ after: this.backfillCursor, limit: PAGE_LIMIT });
        if (gen !== this.conn.activeGen) return; // that socket is gone; its successor resumes
        this.apply(page);
        if (page.length) this.backfillCursor = page[page.length - 1].id;
        if (page.length < PAGE_LIMIT) {
          this.backfillCursor = null;
          this.settleLost(gen);
        }
      }
    } catch {
      if (gen !== this.conn.activeGen) return;
      this.showNotice("Couldn't load the messages you missed. Retrying…");
      // Closing resumes from backfillCursor through the normal reconnect path.
      this.conn.restart();
    }
  }

  // Once recovery is complete, a message sent on an earlier socket that has not
  // shown up was never stored: give its text back rather than lose it.
  settleLost(gen) {
    const lost = [];
    for (const [key, p] of this.pending) {
      if (p.gen !== gen) lost.push(this.removePending(key).text);
    }
    if (lost.length) {
      this.restoreDraft(lost.join('\n'));
      this.showNotice('The connection dropped before your message was delivered. It is back in the message box.');
    }
  }

  onServerError(f) {
    const code = typeof f.code === 'string' ? f.code : '';
    // A read marker is the client's own business: no notice for it.
    if (typeof f.client_id !== 'string' && this.readInFlight !== null && code === 'bad_frame') {
      this.readRefused();
      return;
    }
    const detail = typeof f.detail === 'string' && f.detail ? f.detail : 'The server refused that message.';
    // The error names the client_id of the message it refuses: nothing was
    // stored, so that text goes back into the box.
    if (typeof f.client_id === 'string' && this.pending.has(f.client_id)) {
      this.restoreDraft(this.removePending(f.client_id).text);
    }
    if (code === 'rate_limited') {
      this.showNotice("You're sending messages too fast. Wait a moment, then send again.");
    } else if (code === 'unavailable') {
      this.showNotice(`${detail} Your message was not sent and is back in the message box.`);
    } else if (code === 'forbidden') {
      this.showNotice('You can only change your own messages.');
    } else if (code === 'not_found') {
      this.showNotice('That message no longer exists.');
    } else {
      this.showNotice(detail);
    }
  }

  // ---------- History API ----------

  async fetchMessages(params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) qs.set(k, String(v));
    const body = await getJson(`${this.conv.api}?${qs}`);
    return body && Array.isArray(body.messages) ? body.messages.filter((m) => m && typeof m.id === 'string') : [];
  }

  setHasOlder(more) {
    this.hasOlder = more;
    this.olderBtn.hidden = !more;
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasOlder) return;
    const first = this.list.firstElementChild;
    const before = first && first.dataset.id;
    if (!before) return;
    this.loadingOlder = true;
    this.olderBtn.disabled = true;
    this.olderBtn.textContent = 'Loading earlier messages…';
    try {
      const page = await this.fetchMessages({ before, limit: OLDER_PAGE });
      // What the user looks at keeps its distance from the bottom, through
      // the new rows above it and the button going away.
      const s = this.scroller;
      const fromBottom = s.scrollHeight - s.scrollTop;
      if (page.length < OLDER_PAGE) this.setHasOlder(false);
      this.apply(page, { older: true });
      s.scrollTop = s.scrollHeight - fromBottom;
    } catch {
      this.showNotice("Couldn't load earlier messages. Try again.");
    } finally {
      this.loadingOlder = false;
      this.olderBtn.disabled = false;
      this.olderBtn.textContent = 'Show earlier messages';
    }
  }

  // ---------- Sending ----------

  send() {
    // The server trims Unicode White_Space; trim the same set so the length
    // check and the pending copy match what will be stored.
    const text = this.input.value.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
    if (!text) {
      if (this.actions.editing) this.actions.askDelete(this.actions.editing.row);
      return;
    }
    const length = [...text].length;
    if (length > MAX_CHARS) {
      this.showNotice(`Messages can be at most ${MAX_CHARS} characters; this one has ${length}.`);
      return;
    }
    const clientId = randomId();
    if (this.actions.editing) {
      this.actions.saveEdit(text, clientId);
      return;
    }
    if (!this.conn.send({ message: text, client_id: clientId })) {
      this.showNotice('Not connected — your message was not sent');
      return;
    }
    this.lastTypingSent = 0;
    const row = this.buildRow({ id: '', author: me, message: text, ts: new Date().toISOString() }, true);
    this.list.append(row);
    this.regroup(row);
    this.pending.set(clientId, { row, text, gen: this.conn.activeGen });
    document.body.classList.add('loaded');
    this.scrollToBottom();
    this.input.value = '';
    this.onInputChanged();
    this.input.focus();
  }

  // ---------- Wiring ----------

  wire() {
    this.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });

    this.input.addEventListener('keydown', (event) => {
      if (event.isComposing || event.keyCode === 229) return; // never interrupt an IME
      // Enter sends, Shift+Enter is a newline.
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        this.send();
      } else if (event.key === 'ArrowUp' && !this.input.value && !this.actions.editing) {
        const row = this.actions.lastOwnRow();
        if (row) {
          event.preventDefault();
          this.actions.startEdit(row);
        }
      } else if (event.key === 'Escape' && this.actions.editing) {
        event.preventDefault();
        this.actions.cancelEdit();
      }
    });
    this.input.addEventListener('input', () => {
      this.onInputChanged();
      if (this.input.value.trim()) this.sendTyping();
    });
    this.scroller.addEventListener('scroll', () => {
      this.actions.closeMenu();
      if (this.isNearBottom()) {
        this.newBtn.hidden = true;
        this.scheduleRead();
      }
      if (this.scroller.scrollTop < LOAD_OLDER_PX && this.hasOlder) this.loadOlder();
    }, { passive: true });
    this.newBtn.addEventListener('click', () => {
      this.scrollToBottom();
      this.scheduleRead();
    });
    this.olderBtn.addEventListener('click', () => this.loadOlder());

    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.scheduleRead();
    });
    window.addEventListener('focus', () => this.scheduleRead());
    // Signed out (this socket or the user socket heard it): nothing more can be sent.
    window.addEventListener('chatctl:signed-out', () => {
      this.input.disabled = true;
      document.getElementById('send-button').disabled = true;
    });
  }
}
