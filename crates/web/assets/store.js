// The client's state: places (rooms and conversations) with their messages in the cluster's
// one order, presence, the outbox of messages not yet answered, and what survives a reload.

/** Receipt states of your own private messages, in the order they move (never back). */
export const RECEIPTS = ['sending', 'sent', 'delivered', 'read'];
export const SENT = 1;
export const DELIVERED = 2;
export const READ = 3;

const DEVICE_KEY = 'palaver.device';
const SESSION_KEY = 'palaver.session';
const OUTBOX_KEY = 'palaver.outbox';
const OPEN_KEY = 'palaver.open';

export const state = {
  session: null, // {user, token, device} once logged in
  live: false, // logged in on the current connection
  device: '',
  places: new Map(), // '#den' | '@bob' -> place
  openKey: null,
  online: new Map(), // user -> since (seconds since the epoch)
  users: [],
  outbox: new Map(), // request_id -> {requestId, key, service, data, time, inFlight}
  readSent: new Set(), // ids this browser sent `read` for (their publications are no news)
  link: 'connecting…',
  server: '',
  coordinator: '',
  latency: null,
  messageBytes: 0, // the largest request the gateway takes (its hello says)
};

let localSeq = 0;

// ---- Cursors and order -------------------------------------------------------------------

/** "lamport:origin" as [lamport, origin]. */
function parseCursor(cursor) {
  const at = cursor.indexOf(':');
  return at < 0 ? [Number(cursor) || 0, ''] : [Number(cursor.slice(0, at)) || 0, cursor.slice(at + 1)];
}

/** The origin server of an event id ("s1:4" -> "s1"). */
function originOf(id) {
  const at = String(id).indexOf(':');
  return at < 0 ? '' : String(id).slice(0, at);
}

/** An event's cursor: given by history and inbox pages, made from clock and id otherwise. */
export function cursorOf(event) {
  if (typeof event.cursor === 'string') return event.cursor;
  return `${Number(event.clock) || 0}:${originOf(event.id)}`;
}

function compareCursors(a, b) {
  const [la, oa] = parseCursor(a);
  const [lb, ob] = parseCursor(b);
  if (la !== lb) return la - lb;
  return oa < ob ? -1 : oa > ob ? 1 : 0;
}

/** Messages in the cluster's order; those not stored yet (no cursor) last, as sent. */
function compareItems(a, b) {
  if (a.cursor && b.cursor) return compareCursors(a.cursor, b.cursor) || a.seq - b.seq;
  if (a.cursor) return -1;
  if (b.cursor) return 1;
  return a.seq - b.seq;
}

/** Whether cursor `a` comes after cursor `b` (an absent `b` is before everything). */
export function isAfter(a, b) {
  return b === null || b === undefined || compareCursors(a, b) > 0;
}

// ---- Places ------------------------------------------------------------------------------

function newPlace(key) {
  return {
    key,
    kind: key[0] === '#' ? 'room' : 'dm',
    name: key.slice(1),
    unread: 0,
    marker: null, // cursor of the message our read marker stands at
    items: [], // messages and notices, in order
    byId: new Map(),
    loaded: false, // its newest history page has been read
    more: false, // older messages lie before the oldest shown
    loadingOlder: false,
    members: [],
    topic: null, // the room's topic, when it has one
    marks: { [DELIVERED]: null, [READ]: null }, // receipts: id of the newest message reached
    deleted: false,
  };
}

/** The place for `key`, made when it is new. */
export function placeFor(key) {
  let place = state.places.get(key);
  if (!place) {
    place = newPlace(key);
    state.places.set(key, place);
  }
  return place;
}

export function openPlace() {
  return state.openKey ? state.places.get(state.openKey) || null : null;
}

/** Where a stored message belongs: '#room' for a post, '@person' for a private message. */
export function keyOf(event) {
  if (typeof event.channel === 'string' && typeof event.user === 'string') return `#${event.channel}`;
  if (typeof event.src === 'string' && typeof event.dst === 'string') {
    const me = state.session && state.session.user;
    return `@${event.src === me ? event.dst : event.src}`;
  }
  return null;
}

/** Places in sidebar order: rooms, then conversations, each by name. */
export function sortedPlaces() {
  return [...state.places.values()].sort((a, b) =>
    a.kind !== b.kind ? (a.kind === 'room' ? -1 : 1) : a.name.localeCompare(b.name));
}

// ---- Messages ----------------------------------------------------------------------------

function insert(place, item) {
  place.items.push(item);
  place.items.sort(compareItems);
  if (item.id) place.byId.set(item.id, item);
}

/**
 * Adds a stored message (from a publication, a history or inbox page, or a join answer),
 * once per id. Returns the new item, or null when it was there already.
 */
export function mergeEvent(place, event) {
  const cursor = cursorOf(event);
  const known = place.byId.get(event.id);
  if (known) {
    // An estimated position (our own message, from its answer) gives way to the real one.
    if (!known.exact && cursor !== known.cursor) {
      known.cursor = cursor;
      place.items.sort(compareItems);
    }
    known.exact = true;
    return null;
  }
  const author = event.user ?? event.src;
  const item = {
    kind: 'msg',
    id: event.id,
    cursor,
    exact: true,
    seq: localSeq++,
    author,
    text: String(event.message ?? ''),
    timestamp: Number(event.timestamp) || null,
    mine: author === state.session?.user,
    pending: false,
    error: null,
    receipt: SENT,
  };
  insert(place, item);
  return item;
}

/** Adds a notice line ("bob joined"); `event` carries its id and clock when it has them. */
export function addNotice(place, text, event = {}) {
  if (event.id && place.byId.has(event.id)) return null;
  const item = {
    kind: 'notice',
    id: event.id || null,
    cursor: event.id ? cursorOf(event) : null,
    exact: true,
    seq: localSeq++,
    text,
  };
  insert(place, item);
  return item;
}

/** Adds our own message, shown at once while it is being sent. */
export function addPending(place, entry) {
  const item = {
    kind: 'msg',
    id: null,
    cursor: null,
    exact: false,
    seq: localSeq++,
    author: state.session.user,
    text: entry.data.message,
    timestamp: entry.time,
    mine: true,
    pending: true,
    error: null,
    receipt: 0,
    requestId: entry.requestId,
  };
  insert(place, item);
  return item;
}

/** The pending item of an outbox entry, if it is still shown. */
export function pendingItem(place, requestId) {
  return place.items.find((item) => item.requestId === requestId && item.pending) || null;
}

/**
 * Our message was stored as `id`, at `cursor` in the total order (the answer says where). An
 * answer without one (from an older server) leaves the position estimated from its clock until
 * a publication or a page gives the real one. When that copy came first, ours is dropped.
 */
export function confirmPending(place, item, id, cursor, clock) {
  item.pending = false;
  const copy = place.byId.get(id);
  if (copy) {
    place.items.splice(place.items.indexOf(item), 1);
    copy.receipt = Math.max(copy.receipt, SENT);
    return copy;
  }
  item.id = id;
  item.exact = typeof cursor === 'string' && /^\d+:.+$/.test(cursor);
  item.cursor = item.exact ? cursor : `${Number(clock) || 0}:${originOf(id)}`;
  item.receipt = SENT;
  place.byId.set(id, item);
  place.items.sort(compareItems);
  return item;
}

/** Forgets the messages before `cursor` (not our pending ones): a first page starts there. */
export function dropBefore(place, cursor) {
  place.items = place.items.filter((item) => !item.cursor || !isAfter(cursor, item.cursor));
  place.byId = new Map(place.items.filter((item) => item.id).map((item) => [item.id, item]));
}

/** The oldest stored message shown (where the next older page ends). */
export function oldestMessage(place) {
  return place.items.find((item) => item.kind === 'msg' && item.id && item.exact) || null;
}

/** The newest stored message (pending ones have no id yet). */
export function newestMessage(place, filter = () => true) {
  for (let i = place.items.length - 1; i >= 0; i--) {
    const item = place.items[i];
    if (item.kind === 'msg' && item.id && filter(item)) return item;
  }
  return null;
}

/** Unread messages after `cursor`, not counting our own. */
export function countAfter(place, cursor) {
  return place.items.filter((item) => item.kind === 'msg' && item.id && !item.mine
    && isAfter(item.cursor, cursor)).length;
}

// ---- Receipts ----------------------------------------------------------------------------

/** The person `reader` reached state `rank` up to message `upto` (an id) in this conversation. */
export function setMark(place, upto, rank) {
  const current = place.byId.get(place.marks[rank]);
  const target = place.byId.get(upto);
  if (!current || !target || isAfter(target.cursor, current.cursor)) place.marks[rank] = upto;
  applyMarks(place);
}

/** Raises our messages up to each mark to its state (a mark whose message is not here waits). */
export function applyMarks(place) {
  for (const rank of [DELIVERED, READ]) {
    const target = place.byId.get(place.marks[rank]);
    if (!target) continue;
    for (const item of place.items) {
      if (item.kind === 'msg' && item.mine && item.id && !isAfter(item.cursor, target.cursor)) {
        item.receipt = Math.max(item.receipt, rank);
      }
    }
  }
}

// ---- What survives a reload --------------------------------------------------------------

/** This browser's device id: random, kept in localStorage. */
export function loadDevice() {
  let device = localStorage.getItem(DEVICE_KEY);
  if (!device || !/^[A-Za-z0-9_-]{1,48}$/.test(device)) {
    const bytes = crypto.getRandomValues(new Uint8Array(9));
    device = 'web-' + [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem(DEVICE_KEY, device);
  }
  state.device = device;
}

export function saveSession() {
  if (state.session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  else sessionStorage.removeItem(SESSION_KEY);
}

export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (session && typeof session.user === 'string') state.session = session;
  } catch {
    state.session = null;
  }
}

export function saveOpen() {
  if (state.openKey) sessionStorage.setItem(OPEN_KEY, state.openKey);
  else sessionStorage.removeItem(OPEN_KEY);
}

export function loadOpen() {
  return sessionStorage.getItem(OPEN_KEY);
}

export function saveOutbox() {
  const entries = [...state.outbox.values()].map(({ requestId, key, service, data, time }) =>
    ({ requestId, key, service, data, time }));
  sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(entries));
}

/** The outbox as the last page left it (each entry shown again as pending). */
export function loadOutbox() {
  let entries = [];
  try {
    entries = JSON.parse(sessionStorage.getItem(OUTBOX_KEY)) || [];
  } catch {
    entries = [];
  }
  for (const entry of entries) {
    if (!entry || typeof entry.requestId !== 'string' || typeof entry.key !== 'string') continue;
    state.outbox.set(entry.requestId, { ...entry, inFlight: false });
    addPending(placeFor(entry.key), entry);
  }
}

let requestSeq = 0;

/** A new request id: the device id, the time and a counter (at most 64 bytes). */
export function newRequestId() {
  requestSeq += 1;
  return `${state.device}-${Date.now().toString(36)}-${requestSeq.toString(36)}`;
}
