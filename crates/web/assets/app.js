// Palaver's web client: the session, places and messages, driven by the gateway's answers and
// publications. net.js holds the WebSocket, store.js the state, view.js the rendering.

import { Gateway, ok } from './net.js';
import {
  state, SENT, DELIVERED, READ,
  placeFor, openPlace, keyOf, cursorOf, isAfter,
  mergeEvent, addNotice, addPending, pendingItem, confirmPending, dropBefore,
  oldestMessage, newestMessage, countAfter, setMark, applyMarks,
  loadDevice, loadSession, saveSession, loadOpen, saveOpen, loadOutbox, saveOutbox, newRequestId,
} from './store.js';
import * as view from './view.js';

const HISTORY_LIMIT = 50;
const INBOX_LIMIT = 200;
const INBOX_MAX_PAGES = 100; // per sweep; the next sweep goes on
const SWEEP_MS = 5000;
const READ_DELAY_MS = 150; // a burst of messages moves the read marker once
const OLDER_AT_PX = 40; // how near the top of the list older messages are asked for

const $ = (id) => document.getElementById(id);

const gateway = new Gateway(
  (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
  { open: onOpen, close: onClose, publication: onPublication, answer: onAnswer },
);

// ---- Rendering, batched ------------------------------------------------------------------

let renderQueued = false;
let queuedScroll;

/** Renders once after the current batch of changes ('bottom' / 'keep': see renderMessages). */
function render(scroll) {
  if (scroll) queuedScroll = scroll;
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    const scrollMode = queuedScroll;
    queuedScroll = undefined;
    view.renderStatus();
    view.renderPlaces();
    view.renderHeader();
    view.renderMessages(scrollMode);
    view.renderPeople();
  });
}

// ---- Requests ----------------------------------------------------------------------------

/** A request; its error is shown in the notice area unless `quiet`. Resolves with `data`. */
async function call(service, data, { quiet = false } = {}) {
  const answer = await gateway.request(service, data);
  if (!ok(answer) && !quiet && !answer.lost) view.showNotice(`${service}: ${answer.description}`);
  return answer;
}

function onAnswer(service, data, latency) {
  if (typeof data.server === 'string') state.server = data.server;
  if (latency !== null) state.latency = latency;
  else view.showNotice(String(data.description));
  view.renderStatus();
}

// ---- Connection --------------------------------------------------------------------------

function onOpen() {
  state.link = 'connected';
  view.renderStatus();
  if (state.session) resume();
}

function onClose(code, reason) {
  state.live = false;
  state.link = 'reconnecting…';
  if (code === 1008 || code === 1009) view.showNotice(`The gateway closed the connection: ${reason || code}`);
  view.renderStatus();
}

// ---- Logging in --------------------------------------------------------------------------

/** The login form: log in (with a password or, for a name without one, without), or register. */
async function submitLogin(register) {
  const user = $('login-user').value.trim();
  const password = $('login-password').value;
  if (!user) return view.renderLogin(true, 'Type a user name.');
  if (register && !password) return view.renderLogin(true, 'Choose a password to register.');
  view.setLoginBusy(true);
  try {
    if (register) {
      const answer = await call('register', { user, password }, { quiet: true });
      if (!ok(answer)) return view.renderLogin(true, answer.description);
    }
    const data = { user, device: state.device };
    if (password) data.password = password;
    const answer = await call('login', data, { quiet: true });
    if (!ok(answer)) return view.renderLogin(true, answer.description);
    const name = typeof answer.user === 'string' ? answer.user : user;
    if ((state.session?.user ?? endedUser) !== name) forgetPlaces();
    state.session = { user: name, token: answer.token || null, device: answer.device || state.device };
    saveSession();
    $('login-password').value = '';
    await startSession(answer);
  } finally {
    view.setLoginBusy(false);
  }
}

/** Whose session ended here: logging in as them again keeps their places and outbox. */
let endedUser = null;

/** Logs in again with the session kept in this tab (after a reload or a reconnection). */
async function resume() {
  const { user, token, device } = state.session;
  const data = token ? { user, token, device } : { user, device };
  const answer = await call('login', data, { quiet: true });
  if (ok(answer)) return startSession(answer);
  if (answer.lost) return; // the socket closed again: the next open resumes
  if (answer.gateway) {
    // The gateway could not ask the cluster: try again shortly, on this same connection.
    const socket = gateway.socket;
    setTimeout(() => { if (gateway.socket === socket && gateway.open && !state.live) resume(); }, 2000);
    return;
  }
  endedUser = user;
  state.session = null;
  saveSession();
  view.renderLogin(true, `Could not resume the session: ${answer.description}`);
  view.renderStatus();
}

/** A new user in this tab starts from nothing: other people's places and outbox go. */
function forgetPlaces() {
  state.places.clear();
  state.openKey = null;
  state.outbox.clear();
  saveOutbox();
  saveOpen();
}

/** Logged in on this connection: catch up with everything and re-send what was not answered. */
async function startSession(answer) {
  state.live = true;
  if (typeof answer.coordinator === 'string') state.coordinator = answer.coordinator;
  view.renderLogin(false);
  render();
  flushOutbox();
  await loadUsers();
  await sweepInbox();
  await refreshUnread();
  const place = openPlace();
  if (place) await loadPlace(place);
  else {
    const first = [...state.places.keys()].sort()[0];
    if (first) await open(first);
  }
}

async function loadUsers() {
  const answer = await call('users', {}, { quiet: true });
  if (!ok(answer)) return;
  state.users = Array.isArray(answer.users) ? [...answer.users].sort() : [];
  state.online = new Map((answer.online || []).map((o) => [o.user, o.since]));
  view.renderUserList();
  render();
}

/** Unread counts and read markers of every room and conversation, from the servers. */
async function refreshUnread() {
  const answer = await call('unread', {}, { quiet: true });
  if (!ok(answer)) return;
  const entries = [
    ...(answer.channels || []).map((c) => [`#${c.channel}`, c]),
    ...(answer.conversations || []).map((c) => [`@${c.with}`, c]),
  ];
  for (const [key, entry] of entries) {
    const place = placeFor(key);
    place.unread = Number(entry.unread) || 0;
    if (typeof entry.marker === 'string' && isAfter(entry.marker, place.marker)) place.marker = entry.marker;
  }
  const place = openPlace();
  if (place) scheduleRead(place);
  render();
}

// ---- Places ------------------------------------------------------------------------------

/** What names a place in `history`. */
function placeQuery(place) {
  return place.kind === 'room' ? { channel: place.name } : { with: place.name };
}

/** Opens a place: shows what is known at once, then reads its newest page. */
async function open(key) {
  state.openKey = key;
  saveOpen();
  const place = placeFor(key);
  if (visible()) place.unread = 0;
  render('bottom');
  $('composer').focus();
  await loadPlace(place);
}

/** The newest page of the open place (merged with what is shown), its people and receipts. */
async function loadPlace(place) {
  const first = !place.loaded;
  const answer = await call('history', { ...placeQuery(place), limit: HISTORY_LIMIT });
  if (ok(answer)) mergePage(place, answer, first);
  if (state.openKey !== place.key) return;
  render(first ? 'bottom' : undefined);
  if (place.kind === 'room') await loadMembers(place);
  else await loadReceipts(place);
  scheduleRead(place);
}

/** A newest page (from `history` or `join`): the first one replaces what came before it. */
function mergePage(place, page, first) {
  const messages = Array.isArray(page.messages) ? page.messages : [];
  if (first && page.more && messages.length > 0) dropBefore(place, cursorOf(messages[0]));
  for (const message of messages) mergeEvent(place, message);
  if (first) place.more = Boolean(page.more);
  place.loaded = true;
  applyMarks(place);
}

/** The page before the oldest message shown, keeping the messages in view where they are. */
async function loadOlder() {
  const place = openPlace();
  if (!place || !place.more || place.loadingOlder) return;
  const oldest = oldestMessage(place);
  if (!oldest) return;
  place.loadingOlder = true;
  render();
  const answer = await call('history', { ...placeQuery(place), before: oldest.cursor, limit: HISTORY_LIMIT });
  place.loadingOlder = false;
  if (ok(answer)) {
    for (const message of answer.messages || []) mergeEvent(place, message);
    place.more = Boolean(answer.more);
    applyMarks(place);
  }
  render('keep');
}

async function loadMembers(place) {
  const answer = await call('members', { channel: place.name }, { quiet: true });
  if (ok(answer) && Array.isArray(answer.members)) {
    place.members = answer.members;
    place.topic = typeof answer.topic === 'string' ? answer.topic : null;
    render();
  }
}

/** The state of our newest message in a conversation, from `receipts`. */
async function loadReceipts(place) {
  const newest = newestMessage(place, (item) => item.mine);
  if (!newest) return;
  const answer = await call('receipts', { id: newest.id }, { quiet: true });
  if (!ok(answer)) return;
  const reader = (answer.readers || []).find((r) => r.user === place.name);
  if (!reader) return;
  const rank = reader.read ? READ : reader.delivered ? DELIVERED : SENT;
  if (rank > SENT) setMark(place, newest.id, rank);
  render();
}

/** Joins a room, creating it (owned by us) when it does not exist yet. */
async function joinRoom(name) {
  let answer = await call('join', { channel: name, limit: HISTORY_LIMIT }, { quiet: true });
  if (!ok(answer) && /does not exist/.test(answer.description || '')) {
    const created = await call('channel', { channel: name }, { quiet: true });
    if (!ok(created) && !/already exists/.test(created.description || '')) {
      return view.showNotice(`channel: ${created.description}`);
    }
    answer = await call('join', { channel: name, limit: HISTORY_LIMIT }, { quiet: true });
  }
  if (!ok(answer)) return view.showNotice(`join: ${answer.description}`);
  const key = `#${typeof answer.channel === 'string' ? answer.channel : name}`;
  const place = placeFor(key);
  mergePage(place, answer, !place.loaded);
  place.topic = typeof answer.topic === 'string' ? answer.topic : null;
  state.openKey = key;
  saveOpen();
  render('bottom');
  await loadMembers(place);
  scheduleRead(place);
}

/** Leaves the open room (a deleted one just goes from the list). */
async function leaveRoom() {
  const place = openPlace();
  if (!place || place.kind !== 'room') return;
  if (!place.deleted) {
    const answer = await call('leave', { channel: place.name });
    if (!ok(answer)) return;
  }
  state.places.delete(place.key);
  if (state.openKey === place.key) {
    state.openKey = null;
    saveOpen();
  }
  render();
}

// ---- Messages in -------------------------------------------------------------------------

/**
 * A stored message from a publication or the inbox: shown once (by id), counted as unread
 * where it is not being read, or read at once where it is.
 */
function receiveMessage(event) {
  const key = keyOf(event);
  if (!key || typeof event.id !== 'string') return;
  const place = placeFor(key);
  const item = mergeEvent(place, event);
  if (!item) return;
  if (place.kind === 'dm') applyMarks(place);
  if (place.key === state.openKey && visible()) scheduleRead(place);
  else if (!item.mine && isAfter(item.cursor, place.marker)) place.unread += 1;
  render();
}

function onPublication({ topic, service, data }) {
  switch (service) {
    case 'publish':
    case 'message':
      receiveMessage(data);
      break;
    case 'sealed':
      // The gateway opens sealed messages for us; should one come through, the inbox has it.
      sweepInbox();
      break;
    case 'join':
    case 'leave':
      roomNotice(topic, service, data);
      break;
    case 'delete':
      roomDeleted(topic, data);
      break;
    case 'topic':
      topicSet(topic, data);
      break;
    case 'read':
      markerMoved(data);
      break;
    case 'receipt':
      receiptCame(data);
      break;
    case 'presence':
      if (data.online) state.online.set(data.user, data.since ?? data.at ?? data.timestamp);
      else state.online.delete(data.user);
      render();
      break;
    case 'hello':
      if (topic === 'gateway') state.messageBytes = Number(data.message_bytes) || 0;
      break;
    case 'election':
      if (typeof data.coordinator === 'string') state.coordinator = data.coordinator;
      view.renderStatus();
      break;
    default:
      break;
  }
}

/** "bob joined" / "bob left" in the room, and its member list read again. */
function roomNotice(topic, service, data) {
  const me = state.session?.user;
  const key = `#${data.channel || topic}`;
  // We joined from another device; one we just left stays gone.
  const place = service === 'join' && data.user === me ? placeFor(key) : state.places.get(key);
  if (!place) return;
  addNotice(place, `${data.user} ${service === 'join' ? 'joined' : 'left'}`, data);
  if (service === 'leave' && data.user === me) {
    state.places.delete(key);
    if (state.openKey === key) state.openKey = null;
  } else if (key === state.openKey) {
    loadMembers(place);
  }
  render();
}

/** "bob set the topic: …" in the room, and the header shows it. */
function topicSet(topic, data) {
  const place = state.places.get(`#${data.channel || topic}`);
  if (!place) return;
  place.topic = typeof data.topic === 'string' ? data.topic : null;
  addNotice(place, place.topic ? `${data.user} set the topic: ${place.topic}` : `${data.user} cleared the topic`, data);
  render();
}

/** `/topic TEXT` in a room's composer sets its topic; `/topic -` clears it. */
async function setTopic(place, text) {
  const topic = text.trim();
  const answer = await call('topic', topic === '-' ? { channel: place.name } : { channel: place.name, topic });
  if (ok(answer)) $('composer').value = '';
}

function roomDeleted(topic, data) {
  const key = `#${data.channel || topic}`;
  const place = state.places.get(key);
  if (!place) return;
  place.deleted = true;
  addNotice(place, `${key} was deleted by its owner`, data);
  render();
}

/** Our read marker moved (on another device, or the echo of our own `read`). */
function markerMoved(data) {
  if (state.readSent.delete(data.upto)) return;
  const key = typeof data.with === 'string' ? `@${data.with}`
    : typeof data.channel === 'string' ? `#${data.channel}`
      : [...state.places.keys()].find((k) => state.places.get(k).byId.has(data.upto));
  const place = key && state.places.get(key);
  const item = place && place.byId.get(data.upto);
  if (!item || !isAfter(item.cursor, place.marker)) return;
  place.marker = item.cursor;
  place.unread = countAfter(place, place.marker);
  render();
}

/** `reader` took or read our private messages up to `upto`. */
function receiptCame(data) {
  if (data.sender !== state.session?.user) return;
  const place = state.places.get(`@${data.reader}`);
  if (!place) return;
  setMark(place, data.upto, data.state === 'read' ? READ : DELIVERED);
  render();
}

// ---- Read markers ------------------------------------------------------------------------

const readQueue = new Set();
let readTimer = null;

function visible() {
  return document.visibilityState === 'visible';
}

/** Moves the place's read marker soon (once for a burst of messages). */
function scheduleRead(place) {
  readQueue.add(place.key);
  if (readTimer === null) {
    readTimer = setTimeout(() => {
      readTimer = null;
      for (const key of readQueue) {
        const queued = state.places.get(key);
        if (queued) markRead(queued);
      }
      readQueue.clear();
    }, READ_DELAY_MS);
  }
}

/**
 * Moves our marker to the newest message of a place being read. A place with nothing unread
 * from others is moved too (past our own messages), so that receipts and our other devices
 * start from there.
 */
async function markRead(place) {
  if (!state.live) return;
  if (place.key === state.openKey && visible()) place.unread = 0;
  else if (place.unread > 0) return;
  render();
  const newest = newestMessage(place);
  if (!newest || !isAfter(newest.cursor, place.marker)) return;
  place.marker = newest.cursor;
  state.readSent.add(newest.id);
  const answer = await call('read', { id: newest.id }, { quiet: true });
  // No publication comes for a marker that did not move.
  if (!ok(answer) || answer.moved === false) state.readSent.delete(newest.id);
}

// ---- Messages out ------------------------------------------------------------------------

/** Sends the composer's text to the open place; it shows at once as pending. */
function send() {
  const place = openPlace();
  const composer = $('composer');
  const text = composer.value;
  if (!place || place.deleted || text.trim() === '') return;
  const command = /^\/topic(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (command && place.kind === 'room') {
    if (command[1]) setTopic(place, command[1]);
    else view.showNotice(place.topic ? `topic: ${place.topic}` : `#${place.name} has no topic`);
    return;
  }
  const requestId = newRequestId();
  const entry = {
    requestId,
    key: place.key,
    service: place.kind === 'room' ? 'publish' : 'message',
    data: place.kind === 'room'
      ? { channel: place.name, message: text, request_id: requestId }
      : { dst: place.name, message: text, request_id: requestId },
    time: Date.now() / 1000,
    inFlight: false,
  };
  const item = addPending(place, entry);
  composer.value = '';
  render('bottom');
  if (tooBig(entry)) {
    // The gateway would refuse it unread, and keep refusing it: it never enters the outbox.
    item.pending = false;
    item.error = `longer than the gateway takes (${state.messageBytes} bytes)`;
    return;
  }
  state.outbox.set(requestId, entry);
  saveOutbox();
  flushOutbox();
}

/** Whether a request is larger than the gateway's limit (from its hello). */
function tooBig(entry) {
  if (!state.messageBytes) return false;
  const frame = JSON.stringify({ re: Number.MAX_SAFE_INTEGER, service: entry.service, data: entry.data });
  return new TextEncoder().encode(frame).length > state.messageBytes;
}

let flushing = false;

/**
 * Sends the outbox, one entry after the other so that they are stored in the order written
 * (an entry added meanwhile is sent in its turn).
 */
async function flushOutbox() {
  if (flushing) return;
  flushing = true;
  try {
    for (const entry of state.outbox.values()) {
      // One that got no answer stops the rest: they go after it, at the next try.
      if (!state.live || !(await deliver(entry))) break;
    }
  } finally {
    flushing = false;
  }
}

/**
 * One attempt at an outbox entry. Stored: it gets its id. Refused by the cluster: it leaves
 * the outbox with the error shown. No answer (or the gateway's own error): it stays, and is
 * sent again with the same request_id, which the servers do only once. Returns whether the
 * entry got its answer.
 */
async function deliver(entry) {
  if (entry.inFlight || !state.live) return false;
  entry.inFlight = true;
  const answer = await gateway.request(entry.service, entry.data);
  entry.inFlight = false;
  if (!ok(answer) && answer.gateway) return false;
  if (!state.outbox.delete(entry.requestId)) return true;
  saveOutbox();
  const place = state.places.get(entry.key);
  const item = place && pendingItem(place, entry.requestId);
  if (!item) return true;
  if (!ok(answer)) {
    item.pending = false;
    item.error = String(answer.description);
    view.showNotice(`Not sent: ${answer.description}`);
  } else if (typeof answer.id === 'string') {
    confirmPending(place, item, answer.id, answer.cursor, answer.clock);
    applyMarks(place);
    scheduleRead(place);
  } else {
    item.pending = false;
  }
  render();
  return true;
}

// ---- Inbox -------------------------------------------------------------------------------

let sweeping = false;

/**
 * Takes what arrived for this device while it was away, page by page: each message is
 * handled like a live one (repeats dropped by id), then the page is confirmed with `taken`.
 */
async function sweepInbox() {
  if (sweeping || !state.live) return;
  sweeping = true;
  try {
    for (let page = 0; page < INBOX_MAX_PAGES; page++) {
      const answer = await call('inbox', { limit: INBOX_LIMIT }, { quiet: true });
      if (!ok(answer)) break;
      const messages = Array.isArray(answer.messages) ? answer.messages : [];
      for (const message of messages) receiveMessage(message);
      if (messages.length === 0) break;
      const taken = await call('taken', { cursor: answer.cursor }, { quiet: true });
      if (!ok(taken) || !answer.more) break;
    }
  } finally {
    sweeping = false;
  }
}

function tick() {
  if (!state.live) return;
  sweepInbox();
  flushOutbox();
}

// ---- Wiring ------------------------------------------------------------------------------

/** A room or person typed into a box: trimmed, without a leading '#' or '@'. */
function typedName(input) {
  const name = input.value.trim().replace(/^[#@]/, '');
  input.value = '';
  return name;
}

function bindEvents() {
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); submitLogin(false); });
  $('register-button').addEventListener('click', () => submitLogin(true));
  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = typedName($('join-input'));
    if (name) joinRoom(name);
  });
  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = typedName($('dm-input'));
    if (name) open(`@${name}`);
  });
  $('places').addEventListener('click', (e) => {
    const li = e.target.closest('li.place');
    if (li) open(li.dataset.place);
  });
  $('leave-button').addEventListener('click', leaveRoom);
  $('older').addEventListener('click', loadOlder);
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < OLDER_AT_PX) loadOlder();
  });
  $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('composer').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  document.addEventListener('visibilitychange', () => {
    const place = openPlace();
    if (place && visible()) scheduleRead(place);
  });
}

function boot() {
  loadDevice();
  loadSession();
  if (state.session) {
    state.openKey = loadOpen();
    if (state.openKey) placeFor(state.openKey);
    loadOutbox();
  }
  view.renderLogin(!state.session);
  bindEvents();
  render('bottom');
  gateway.connect();
  setInterval(tick, SWEEP_MS);
}

boot();
