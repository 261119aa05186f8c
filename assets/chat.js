/* chatctl room and direct-chat client.
 * One WebSocket carries live frames (PROTOCOL.md "WebSocket"); the history API
 * fills gaps after a reconnect and loads older messages on request.
 * Untrusted text (messages, names) only ever reaches the DOM via textContent. */
(() => {
  'use strict';

  const MAX_CHARS = 4096;          // server limit, in Unicode scalar values
  const COUNT_FROM = MAX_CHARS - 300; // show a counter only when it matters
  const PAGE_LIMIT = 500;          // largest page the history API returns
  const INITIAL_HISTORY = 50;      // history frame size without ?since
  const OLDER_PAGE = 50;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const STABLE_AFTER_MS = 10000;   // an open socket this long resets the backoff
  const NOTICE_MS = 6000;
  const GROUP_GAP_MS = 5 * 60 * 1000;
  const NEAR_BOTTOM_PX = 80;

  const $ = (id) => document.getElementById(id);
  const list = $('messages');
  const scroller = $('scroller');
  const input = $('message-input');
  const composer = $('composer');
  const statusEl = $('status');
  const noticeEl = $('notice');
  const newBtn = $('new-messages');
  const olderBtn = $('load-older');
  const countEl = $('char-count');

  const me = document.body.dataset.username || '';
  const baseTitle = document.title;
  const conv = conversationFromPath(location.pathname);
  if (!list || !conv) {
    if (noticeEl) noticeEl.textContent = 'This address does not name a room or a person.';
    return;
  }

  // ---------- State ----------

  const seen = new Set();     // ids already rendered: frames may repeat across reconnects
  let lastId = null;          // highest id rendered
  // While a `more` recovery is paging through the history API, everything up
  // to this id is shown but later live frames may have jumped past a gap, so a
  // reconnect must resume from here rather than from lastId.
  let backfillCursor = null;
  // client_id -> { row, text, gen }. Map order is send order; pending rows sit
  // after all confirmed rows in the list, which keeps the binary search simple.
  const pending = new Map();

  let ws = null;
  let generation = 0;         // bumps on every connect
  let activeGen = 0;          // generation of the socket that is open, 0 if none
  let attempt = 0;
  let needAuthCheck = false;
  let leaving = false;
  let retryTimer = null;
  let countdownTimer = null;
  let stableTimer = null;
  let noticeTimer = null;
  let unread = 0;

  // ---------- Paths ----------

  function conversationFromPath(path) {
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
      ? { ws: `/ws/chat/${enc}/`, api: `/api/rooms/${enc}/messages` }
      : { ws: `/ws/direct/${enc}/`, api: `/api/direct/${enc}/messages` };
  }

  function toLogin() {
    leaving = true;
    location.assign('/login?next=' + encodeURIComponent(location.pathname));
  }

  // ---------- Rendering ----------

  function isMessage(m) {
    return m && typeof m === 'object' && typeof m.id === 'string' && typeof m.author === 'string'
      && typeof m.message === 'string';
  }

  function validMessages(arr) {
    return Array.isArray(arr) ? arr.filter(isMessage) : [];
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Today: the time only. Other days need the date too, or "09:12" misleads.
  function shortTime(d) {
    const hm = d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
    const now = new Date();
    if (d.toDateString() === now.toDateString()) return hm;
    const opts = { month: 'short', day: 'numeric' };
    if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
    return d.toLocaleDateString([], opts) + ' ' + hm;
  }

  function buildRow(m, isPending) {
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
      time.title = when.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' });
    }

    const bubble = el('div', 'bubble');
    bubble.append(el('span', 'author', m.author), el('p', 'text', m.message), time);
    li.append(bubble);
    return li;
  }

  // Consecutive messages from one author within a few minutes read as a block.
  function regroup(row) {
    if (!row) return;
    const prev = row.previousElementSibling;
    const same = !!prev && prev.dataset.author === row.dataset.author
      && Math.abs(Number(row.dataset.time) - Number(prev.dataset.time)) < GROUP_GAP_MS;
    row.classList.toggle('continued', same);
  }

  function removePending(key) {
    const p = pending.get(key);
    if (!p) return null;
    pending.delete(key);
    const next = p.row.nextElementSibling;
    p.row.remove();
    regroup(next);
    return p;
  }

  // A stored copy of one of our own messages retires its pending row. The echo
  // names it by client_id; after a reconnect the history copy has no client_id,
  // so a message sent on an older socket is matched by its text instead.
  function settlePending(m) {
    let key = null;
    if (typeof m.client_id === 'string' && pending.has(m.client_id)) {
      key = m.client_id;
    } else if (m.author === me) {
      for (const [k, p] of pending) {
        if (p.gen !== activeGen && p.text === m.message) { key = k; break; }
      }
    }
    if (key !== null) removePending(key);
  }

  // Inserts one message in id order; returns 'end', 'middle' or null (dupe).
  function insertMessage(m) {
    if (seen.has(m.id)) return null;
    seen.add(m.id);
    settlePending(m);

    const row = buildRow(m, false);
    // Confirmed rows are children[0 .. confirmed), sorted by id (ids sort as strings).
    const rows = list.children;
    const confirmed = rows.length - pending.size;
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
    list.insertBefore(row, rows[lo] || null);
    regroup(row);
    regroup(row.nextElementSibling);
    if (lastId === null || m.id > lastId) lastId = m.id;
    return lo === confirmed ? 'end' : 'middle';
  }

  function isNearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    scroller.scrollTop = scroller.scrollHeight;
    newBtn.hidden = true;
  }

  // opts.live: frames from the socket (count as unread); opts.older: a page
  // prepended above the view, whose scroll position must not jump.
  function render(msgs, opts = {}) {
    if (!msgs.length) return;
    const stick = isNearBottom();
    const oldHeight = scroller.scrollHeight;
    const oldTop = scroller.scrollTop;
    let grewAtEnd = false;
    let fromOthers = 0;
    for (const m of msgs) {
      if (insertMessage(m) === 'end') {
        grewAtEnd = true;
        if (opts.live && m.author !== me) fromOthers += 1;
      }
    }
    if (opts.older) scroller.scrollTop = oldTop + (scroller.scrollHeight - oldHeight);
    else if (stick) scrollToBottom();
    else if (grewAtEnd) newBtn.hidden = false;

    if (fromOthers && document.hidden) {
      unread += fromOthers;
      updateTitle();
    }
  }

  function updateTitle() {
    document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
  }

  // ---------- Notices and the draft ----------

  function showNotice(text, ms = NOTICE_MS) {
    noticeEl.textContent = text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeEl.textContent = ''; }, ms);
  }

  // Puts unsent text back in the box, ahead of anything typed since.
  function restoreDraft(text) {
    const current = input.value;
    input.value = current.trim() ? text + '\n' + current : text;
    onInputChanged();
  }

  function autosize() {
    input.style.height = 'auto';
    const border = input.offsetHeight - input.clientHeight;
    input.style.height = input.scrollHeight + border + 'px';
  }

  function onInputChanged() {
    autosize();
    const n = input.value.length < COUNT_FROM ? 0 : [...input.value].length;
    countEl.textContent = n >= COUNT_FROM ? `${n}/${MAX_CHARS}` : '';
    countEl.classList.toggle('over', n > MAX_CHARS);
  }

  // ---------- Server frames ----------

  function onFrame(raw, gen) {
    let f;
    try {
      f = JSON.parse(raw);
    } catch {
      return;
    }
    if (!f || typeof f !== 'object') return;
    if (f.type === 'chat_handler') {
      if (isMessage(f)) render([f], { live: true });
    } else if (f.type === 'history') {
      onHistory(f, gen);
    } else if (f.type === 'error') {
      onServerError(f);
    }
  }

  function onHistory(f, gen) {
    const msgs = validMessages(f.messages);
    const since = backfillCursor !== null ? backfillCursor : lastId;
    const firstFill = since === null;
    render(msgs);
    document.body.classList.add('loaded');
    // Without ?since the server sent only the newest messages; older ones may exist.
    if (firstFill) olderBtn.hidden = msgs.length < INITIAL_HISTORY;

    if (f.more === true) {
      backfillCursor = msgs.length ? msgs[msgs.length - 1].id : since;
      backfill(gen);
    } else {
      backfillCursor = null;
      settleLost(gen);
    }
  }

  // Pages through `after=` until a short page: the history frame stops at 1,000.
  async function backfill(gen) {
    try {
      while (gen === activeGen && backfillCursor !== null) {
        const page = await fetchMessages({ after: backfillCursor, limit: PAGE_LIMIT });
        if (gen !== activeGen) return; // that socket is gone; its successor resumes
        render(page);
        if (page.length) backfillCursor = page[page.length - 1].id;
        if (page.length < PAGE_LIMIT) {
          backfillCursor = null;
          settleLost(gen);
        }
      }
    } catch {
      if (gen !== activeGen) return;
      showNotice("Couldn't load the messages you missed. Retrying…");
      // Closing resumes from backfillCursor through the normal reconnect path.
      if (ws) ws.close(4000, 'history fetch failed');
    }
  }

  // Once recovery is complete, a message sent on an earlier socket that has not
  // shown up was never stored: give its text back rather than lose it.
  function settleLost(gen) {
    const lost = [];
    for (const [key, p] of pending) {
      if (p.gen !== gen) lost.push(removePending(key).text);
    }
    if (lost.length) {
      restoreDraft(lost.join('\n'));
      showNotice('The connection dropped before your message was delivered. It is back in the message box.');
    }
  }

  function onServerError(f) {
    const code = typeof f.code === 'string' ? f.code : '';
    const detail = typeof f.detail === 'string' && f.detail ? f.detail : 'The server refused that message.';
    // The error names the client_id of the message it refuses: nothing was
    // stored, so that text goes back into the box.
    if (typeof f.client_id === 'string' && pending.has(f.client_id)) {
      restoreDraft(removePending(f.client_id).text);
    }
    if (code === 'rate_limited') {
      showNotice("You're sending messages too fast. Wait a moment, then send again.");
    } else if (code === 'unavailable') {
      showNotice(`${detail} Your message was not sent and is back in the message box.`);
    } else {
      showNotice(detail);
    }
  }

  // ---------- History API ----------

  async function fetchMessages(params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) qs.set(k, String(v));
    const res = await fetch(`${conv.api}?${qs}`, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    });
    if (res.status === 401) {
      toLogin();
      throw new Error('signed out');
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    return validMessages(body && body.messages);
  }

  async function loadOlder() {
    const first = list.firstElementChild;
    const before = first && first.dataset.id;
    if (!before) return;
    olderBtn.disabled = true;
    try {
      const page = await fetchMessages({ before, limit: OLDER_PAGE });
      render(page, { older: true });
      if (page.length < OLDER_PAGE) olderBtn.hidden = true;
    } catch {
      showNotice("Couldn't load earlier messages. Try again.");
    } finally {
      olderBtn.disabled = false;
    }
  }

  // ---------- Connection ----------

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function connect() {
    clearRetry();
    if (ws || leaving) return;
    const gen = ++generation;
    setStatus(attempt ? 'reconnecting' : 'connecting', attempt ? 'Reconnecting…' : 'Connecting…');

    const since = backfillCursor !== null ? backfillCursor : lastId;
    let url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + conv.ws;
    if (since !== null) url += '?since=' + encodeURIComponent(since);

    let sock;
    try {
      sock = new WebSocket(url);
    } catch {
      needAuthCheck = true;
      scheduleReconnect();
      return;
    }
    ws = sock;
    let opened = false;

    sock.onopen = () => {
      if (ws !== sock) return;
      opened = true;
      activeGen = gen;
      setStatus('online', 'Online');
      stableTimer = setTimeout(() => { attempt = 0; }, STABLE_AFTER_MS);
    };
    sock.onmessage = (event) => {
      if (ws === sock && typeof event.data === 'string') onFrame(event.data, gen);
    };
    // Every close, whatever its code (1001 going away, 1008 slow consumer,
    // 1006 network), gets the same treatment: back off and resume from `since`.
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      activeGen = 0;
      clearTimeout(stableTimer);
      // A socket that never opened may mean the session ended: the upgrade's
      // 401 is invisible to scripts, so ask /api/me before trying again.
      needAuthCheck = !opened;
      if (!leaving) scheduleReconnect();
    };
  }

  // Exponential backoff with full jitter, so a restarted server is not hit by
  // every client at the same instant.
  function scheduleReconnect() {
    clearRetry();
    if (leaving) return;
    if (navigator.onLine === false) {
      setStatus('offline', 'Offline'); // the `online` event reconnects
      return;
    }
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt = Math.min(attempt + 1, 16);
    const delay = Math.random() * ceiling;
    const due = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setStatus('reconnecting', `Reconnecting in ${s}s`);
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(reconnect, delay);
  }

  function clearRetry() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = null;
    countdownTimer = null;
  }

  async function reconnect() {
    clearRetry();
    if (ws || leaving) return;
    if (needAuthCheck) {
      setStatus('reconnecting', 'Reconnecting…');
      try {
        const res = await fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 401) {
          toLogin();
          return;
        }
      } catch {
        // Network trouble: the socket attempt will fail too and back off.
      }
    }
    connect();
  }

  // ---------- Sending ----------

  function randomId() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function send() {
    // The server trims Unicode White_Space; trim the same set so the length
    // check and the pending copy match what will be stored.
    const text = input.value.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
    if (!text) return;
    const length = [...text].length;
    if (length > MAX_CHARS) {
      showNotice(`Messages can be at most ${MAX_CHARS} characters; this one has ${length}.`);
      return;
    }
    if (!ws || ws.readyState !== WebSocket.OPEN || activeGen === 0) {
      showNotice('Not connected — your message was not sent');
      return;
    }
    const clientId = randomId();
    try {
      ws.send(JSON.stringify({ message: text, client_id: clientId }));
    } catch {
      showNotice('Not connected — your message was not sent');
      return;
    }
    const row = buildRow({ id: '', author: me, message: text, ts: new Date().toISOString() }, true);
    list.append(row);
    regroup(row);
    pending.set(clientId, { row, text, gen: activeGen });
    document.body.classList.add('loaded');
    scrollToBottom();
    input.value = '';
    onInputChanged();
    input.focus();
  }

  // ---------- Wiring ----------

  composer.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });

  input.addEventListener('keydown', (event) => {
    // Enter sends, Shift+Enter is a newline; never interrupt an IME composition.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener('input', onInputChanged);

  scroller.addEventListener('scroll', () => {
    if (isNearBottom()) newBtn.hidden = true;
  }, { passive: true });
  newBtn.addEventListener('click', scrollToBottom);
  olderBtn.addEventListener('click', loadOlder);

  // Coming back online or to the tab should not wait out a long backoff.
  window.addEventListener('online', () => {
    if (!ws) reconnect();
  });
  window.addEventListener('offline', () => {
    if (!ws) {
      clearRetry();
      setStatus('offline', 'Offline');
    }
  });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    unread = 0;
    updateTitle();
    if (!ws) reconnect();
  });

  // Leaving the page must not look like a dropped connection; a page restored
  // from the back/forward cache picks up where it left off.
  window.addEventListener('pagehide', () => {
    leaving = true;
    clearRetry();
    if (ws) {
      const sock = ws;
      ws = null;
      activeGen = 0;
      sock.close(1000);
    }
  });
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted) return;
    leaving = false;
    attempt = 0;
    reconnect();
  });

  onInputChanged();
  connect();
})();
