// Rendering: the state as DOM. People's text, names and error texts only ever become text
// nodes (textContent), never markup.

import { state, RECEIPTS, openPlace, sortedPlaces } from './store.js';

const $ = (id) => document.getElementById(id);

/** Each item's element, made once and updated in place. */
const elements = new WeakMap();

const NOTICE_MS = 6000;
let noticeTimer = null;
/** How close to the bottom (px) the list counts as followed to its end. */
const NEAR_BOTTOM_PX = 60;

/** An element with a class and a text (both optional). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clockTime(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function fullTime(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

// ---- Login and notices -------------------------------------------------------------------

/** Shows the login form (with why, if anything went wrong) or the chat. */
export function renderLogin(show, error = '') {
  $('login').hidden = !show;
  $('app').hidden = show;
  $('login-error').textContent = error;
  if (show) $('login-user').focus();
}

export function setLoginBusy(busy) {
  $('login-button').disabled = busy;
  $('register-button').disabled = busy;
}

/** Shows an error or a remark for a few seconds. */
export function showNotice(text) {
  const notice = $('notice');
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, NOTICE_MS);
}

// ---- Status line -------------------------------------------------------------------------

export function renderStatus() {
  const link = $('status-link');
  link.textContent = state.link;
  link.dataset.state = state.link === 'connected' ? 'up' : 'down';
  $('status-user').textContent = state.session ? `as ${state.session.user}` : '';
  $('status-server').textContent = state.server ? `server ${state.server}` : '';
  $('status-coordinator').textContent = state.coordinator ? `coordinator ${state.coordinator}` : '';
  $('status-latency').textContent = state.latency === null ? '' : `${Math.round(state.latency)} ms`;
}

// ---- Sidebar -----------------------------------------------------------------------------

export function renderPlaces() {
  $('me').textContent = state.session ? state.session.user : '';
  const list = $('places');
  list.replaceChildren(...sortedPlaces().map(placeEntry));
}

function placeEntry(place) {
  const li = el('li', 'place');
  li.dataset.place = place.key;
  li.classList.toggle('open', place.key === state.openKey);
  li.classList.toggle('deleted', place.deleted);
  li.classList.toggle('has-unread', place.unread > 0);
  li.append(el('span', 'sigil', place.key[0]), el('span', 'name', place.name));
  const badge = el('span', 'unread', String(place.unread));
  badge.hidden = place.unread === 0;
  li.append(badge);
  li.title = place.key;
  return li;
}

export function renderUserList() {
  $('user-list').replaceChildren(...state.users.map((user) => {
    const option = document.createElement('option');
    option.value = user;
    return option;
  }));
}

// ---- The open place ----------------------------------------------------------------------

export function renderHeader() {
  const place = openPlace();
  $('place-title').textContent = place ? place.key : 'No room or conversation open';
  const topic = place && place.kind === 'room' ? place.topic : null;
  $('place-topic').textContent = topic || '';
  $('place-topic').hidden = !topic;
  $('leave-button').hidden = !place || place.kind !== 'room';
  const canWrite = Boolean(place) && !place.deleted;
  $('composer').disabled = !canWrite;
  $('send-button').disabled = !canWrite;
}

/**
 * Shows the open place's messages. `scroll`: 'bottom' to go to the newest, 'keep' to keep the
 * messages in view where they are (older ones came in above); by default the list follows its
 * end when it was there.
 */
export function renderMessages(scroll) {
  const list = $('messages');
  const older = $('older');
  const place = openPlace();
  const items = place ? place.items : [];
  const fromBottom = list.scrollHeight - list.scrollTop;
  const atBottom = fromBottom - list.clientHeight < NEAR_BOTTOM_PX;

  const wanted = items.map(elementFor);
  const keep = new Set(wanted);
  for (const child of [...list.children]) {
    if (child !== older && !keep.has(child)) child.remove();
  }
  let previous = older;
  for (const node of wanted) {
    if (previous.nextSibling !== node) list.insertBefore(node, previous.nextSibling);
    previous = node;
  }
  older.hidden = !place || !place.more;
  older.disabled = Boolean(place && place.loadingOlder);

  if (scroll === 'bottom' || (scroll !== 'keep' && atBottom)) list.scrollTop = list.scrollHeight;
  else if (scroll === 'keep') list.scrollTop = list.scrollHeight - fromBottom;
}

/** The element of a message or notice, brought up to date. */
function elementFor(item) {
  let node = elements.get(item);
  if (!node) {
    node = item.kind === 'notice' ? el('div', 'notice', item.text) : newMessageElement(item);
    elements.set(item, node);
  }
  if (item.kind === 'msg') updateMessageElement(node, item);
  return node;
}

function newMessageElement(item) {
  const node = el('div', 'msg');
  const meta = el('div', 'meta');
  meta.append(el('span', 'author', item.author), el('span', 'time'));
  node.append(meta, el('div', 'text', item.text));
  return node;
}

function updateMessageElement(node, item) {
  node.classList.toggle('mine', item.mine);
  node.classList.toggle('pending', item.pending);
  node.classList.toggle('failed', Boolean(item.error));
  if (item.id) node.dataset.id = item.id;
  else delete node.dataset.id;

  const time = node.querySelector('.time');
  time.textContent = item.timestamp ? clockTime(item.timestamp) : '';
  time.title = item.timestamp ? fullTime(item.timestamp) : '';

  const meta = node.querySelector('.meta');
  const place = openPlace();
  const receiptShown = item.mine && place && place.kind === 'dm' && !item.error;
  setChild(meta, 'receipt', receiptShown ? RECEIPTS[item.pending ? 0 : item.receipt] : null, (span, value) => {
    span.dataset.state = value;
    span.textContent = value === 'sending' ? 'sending…' : value;
  });
  const pendingShown = item.pending && !receiptShown;
  setChild(meta, 'pending-mark', pendingShown ? 'sending…' : null, (span, value) => {
    span.textContent = value;
  });
  setChild(node, 'error', item.error, (div, value) => {
    div.textContent = `not sent: ${value}`;
  }, 'div');
}

/** Keeps one child of class `name` while `value` is set (updated by `fill`), none otherwise. */
function setChild(parent, name, value, fill, tag = 'span') {
  let child = parent.querySelector(`:scope > .${name}`);
  if (value === null || value === undefined) {
    if (child) child.remove();
    return;
  }
  if (!child) {
    child = el(tag, name);
    parent.append(child);
  }
  fill(child, value);
}

// ---- People ------------------------------------------------------------------------------

export function renderPeople() {
  const place = openPlace();
  const list = $('members');
  if (!place) {
    $('people-title').textContent = 'Members';
    list.replaceChildren();
    return;
  }
  if (place.kind === 'room') {
    $('people-title').textContent = `Members (${place.members.length})`;
    list.replaceChildren(...[...place.members].sort((a, b) => a.localeCompare(b))
      .map((user) => personEntry(user)));
  } else {
    $('people-title').textContent = 'Conversation with';
    list.replaceChildren(personEntry(place.name, true));
  }
}

function personEntry(user, withPresence = false) {
  const since = state.online.get(user);
  const online = since !== undefined;
  const li = el('li', 'member');
  li.dataset.user = user;
  li.classList.toggle('online', online);
  const dot = el('span', 'dot');
  dot.title = online ? 'online' : 'offline';
  li.append(dot, el('span', 'member-name', user));
  if (user === state.session?.user) li.append(el('span', 'you', '(you)'));
  if (withPresence) {
    const text = online ? (since ? `online since ${clockTime(since)}` : 'online') : 'offline';
    li.append(el('div', 'presence', text));
  } else if (online && since) {
    li.title = `online since ${fullTime(since)}`;
  }
  return li;
}
