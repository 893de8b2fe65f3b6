// The WebSocket to the gateway: requests matched to answers by `re`, publications handed on,
// and reconnection with backoff when the socket closes.

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 4000;
// The gateway answers every request (with an error of its own when the cluster is silent);
// this only guards against a request lost with a half-dead socket.
const ANSWER_TIMEOUT_MS = 30000;
// A request made while the socket (re)connects waits this long for it before it fails: a
// person who clicks as the page opens is not told the gateway is unreachable.
const CONNECT_WAIT_MS = 5000;

/** Whether an answer's `data` says the request worked ("OK", "sucesso", ...). */
export function ok(data) {
  return data.status !== 'erro';
}

/** An answer made here, for a request that got none from the gateway. */
function lost(description) {
  return { status: 'erro', description, gateway: true, lost: true };
}

export class Gateway {
  /**
   * @param {string} url the WebSocket's address
   * @param {object} on callbacks: open(), close(code, reason), publication(msg),
   *   answer(service, data, latencyMs)
   */
  constructor(url, on) {
    this.url = url;
    this.on = on;
    this.socket = null;
    this.nextRe = 1;
    this.waiting = new Map(); // re -> {resolve, service, sentAt, timer}
    this.backoff = BACKOFF_FIRST_MS;
    this.whenOpen = []; // resolvers of requests waiting for the socket to open
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.backoff = BACKOFF_FIRST_MS;
      this.on.open();
      const ready = this.whenOpen;
      this.whenOpen = [];
      for (const resume of ready) resume(true);
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.failAll('the connection to the gateway was lost');
      this.on.close(event.code, event.reason);
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    });
  }

  /**
   * Sends a request; resolves with the answer's `data` (never rejects: a request that got no
   * answer resolves with an error marked `gateway` and `lost`).
   */
  request(service, data = {}) {
    if (!this.open) {
      return this.opened(CONNECT_WAIT_MS).then((open) =>
        open ? this.request(service, data) : lost('not connected to the gateway'));
    }
    const re = this.nextRe++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(re, lost('no answer from the gateway')), ANSWER_TIMEOUT_MS);
      this.waiting.set(re, { resolve, service, sentAt: performance.now(), timer });
      this.socket.send(JSON.stringify({ re, service, data }));
    });
  }

  /** Resolves with true once the socket is open, or with false after `ms`. */
  opened(ms) {
    return new Promise((resolve) => {
      const resume = (open) => {
        clearTimeout(timer);
        resolve(open);
      };
      const timer = setTimeout(() => {
        this.whenOpen = this.whenOpen.filter((r) => r !== resume);
        resolve(false);
      }, ms);
      this.whenOpen.push(resume);
    });
  }

  receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    const data = msg.data && typeof msg.data === 'object' ? msg.data : {};
    if (typeof msg.topic === 'string') {
      this.on.publication({ topic: msg.topic, service: msg.service, data });
    } else if (this.waiting.has(msg.re)) {
      const { service, sentAt } = this.waiting.get(msg.re);
      this.on.answer(service, data, performance.now() - sentAt);
      this.settle(msg.re, data);
    } else if (!ok(data) && typeof data.description === 'string') {
      // An error that answers nothing of ours (a frame the gateway could not read).
      this.on.answer(msg.service, data, null);
    }
  }

  settle(re, data) {
    const entry = this.waiting.get(re);
    if (!entry) return;
    this.waiting.delete(re);
    clearTimeout(entry.timer);
    entry.resolve(data);
  }

  failAll(description) {
    for (const re of [...this.waiting.keys()]) this.settle(re, lost(description));
  }
}
