#!/usr/bin/env node
/*
 * pusher-js interoperability scenarios.
 *
 *   node scenarios.js <scenario> --ws-host 127.0.0.1 --ws-port N --http-port N \
 *       --app-id ID --key K --secret S [--master-key BASE64] [--leave unsubscribe|disconnect]
 *
 * Each run drives real pusher-js 8 clients (Node build, WebSocket transport only) against the
 * server, publishes through the Node `pusher` server SDK (HTTP API), prints exactly ONE JSON line
 * describing what was observed, and exits 0. On an exception or after the hard timeout it prints
 * what it has (with "error") and exits 1.
 *
 * Channel auth and user auth are signed locally with the server SDK (custom handlers), so no
 * HTTP auth endpoint is involved.
 */
'use strict';

const crypto = require('crypto');
// In Node, the package's main entry (dist/node/pusher.js) is the with-encryption build: it bundles
// tweetnacl and sets options.nacl. `pusher-js/with-encryption` points at the *web* build, which
// needs `window` and does not load in Node.
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const SCENARIOS = [
  'public',
  'private',
  'presence',
  'encrypted',
  'client-events',
  'signin',
  'auth-error',
  'exclusion',
];

const HARD_TIMEOUT_MS = 15000;
// How long to keep listening for an event that must NOT arrive, once the corresponding positive
// event has arrived on another connection.
const QUIET_MS = 1000;
// Per-step wait for things we want to report on rather than hang on.
const STEP_MS = 5000;

// ---------------------------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const out = { scenario: argv[0] };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`);
    const name = a.slice(2);
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${a}`);
    out[name] = value;
    i++;
  }
  for (const req of ['ws-host', 'ws-port', 'http-port', 'app-id', 'key', 'secret']) {
    if (!out[req]) throw new Error(`missing --${req}`);
  }
  if (!SCENARIOS.includes(out.scenario)) {
    throw new Error(`unknown scenario ${JSON.stringify(out.scenario)}; one of ${SCENARIOS.join(', ')}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// output (exactly once)

const result = { scenario: process.argv[2] || null, ok: false, errors: [], frames: [] };
const clients = [];
let finished = false;

function finish(code, error) {
  if (finished) return;
  finished = true;
  if (error) result.error = String(error && error.stack ? error.stack : error);
  result.ok = code === 0;
  try {
    snapshotFrames();
    result.clients = clients.map((c) => c._interopRecord);
  } catch (e) {
    /* ignore */
  }
  for (const c of clients) {
    try {
      c.disconnect();
    } catch (e) {
      /* ignore */
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

const hardTimer = setTimeout(() => {
  result.timeout = true;
  finish(1, `hard timeout after ${HARD_TIMEOUT_MS} ms (stage: ${result.stage || 'unknown'})`);
}, HARD_TIMEOUT_MS);
hardTimer.unref();

process.on('unhandledRejection', (e) => finish(1, e));
process.on('uncaughtException', (e) => finish(1, e));

function stage(name) {
  result.stage = name;
}

// ---------------------------------------------------------------------------------------------
// helpers

function rand() {
  return crypto.randomBytes(4).toString('hex');
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolve with the promise's value, or with `fallback` after `ms`. */
function within(promise, ms, fallback = null) {
  let t;
  return Promise.race([
    promise,
    new Promise((resolve) => {
      t = setTimeout(() => resolve(fallback), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

function clone(v) {
  return v === undefined ? null : JSON.parse(JSON.stringify(v));
}

function makeServerSdk(args) {
  const opts = {
    appId: args['app-id'],
    key: args.key,
    secret: args.secret,
    host: args['ws-host'],
    port: Number(args['http-port']),
    useTLS: false,
    timeout: 5000,
  };
  if (args['master-key']) opts.encryptionMasterKeyBase64 = args['master-key'];
  return new PusherServer(opts);
}

/**
 * A pusher-js client. `opts.presence` = {user_id, user_info} is the channel_data its authorizer
 * signs for presence channels; `opts.user` = user data for signin(); `opts.badAuth` makes the
 * channel authorizer return a wrong signature.
 */
function makeClient(args, sdk, label, opts = {}) {
  const frames = [];
  const record = { label, socket_id: null, states: [], errors: [] };

  const channelAuthorization = {
    customHandler: ({ socketId, channelName }, callback) => {
      try {
        if (opts.badAuth) {
          const wrong = crypto
            .createHmac('sha256', 'definitely-not-the-secret')
            .update(`${socketId}:${channelName}`)
            .digest('hex');
          callback(null, { auth: `${args.key}:${wrong}` });
          return;
        }
        const data = channelName.startsWith('presence-') ? opts.presence : undefined;
        callback(null, sdk.authorizeChannel(socketId, channelName, data));
      } catch (e) {
        callback(e, null);
      }
    },
  };
  const userAuthentication = {
    customHandler: ({ socketId }, callback) => {
      try {
        callback(null, sdk.authenticateUser(socketId, opts.user));
      } catch (e) {
        callback(e, null);
      }
    },
  };

  const client = new PusherClient(args.key, {
    wsHost: args['ws-host'],
    wsPort: Number(args['ws-port']),
    wssPort: Number(args['ws-port']),
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    disableStats: true,
    channelAuthorization,
    userAuthentication,
  });
  clients.push(client);

  client.connection.bind('state_change', ({ current }) => record.states.push(current));
  client.connection.bind('error', (err) => {
    const e = clone(err && err.data !== undefined ? { type: err.type, data: err.data } : err);
    record.errors.push(e);
    result.errors.push({ client: label, error: e });
  });
  client.connection.bind('message', (msg) => {
    if (frames.length < 40) frames.push({ client: label, frame: clone(msg) });
  });
  // frames and records are copied into the result by finish() (see snapshotFrames)
  client._interopFrames = frames;
  client._interopRecord = record;
  return client;
}

function snapshotFrames() {
  const all = [];
  for (const c of clients) all.push(...(c._interopFrames || []));
  result.frames = all.slice(0, 120);
}

function connected(client) {
  return new Promise((resolve, reject) => {
    const done = () => {
      client._interopRecord.socket_id = client.connection.socket_id;
      resolve(client.connection.socket_id);
    };
    if (client.connection.state === 'connected') return done();
    client.connection.bind('state_change', ({ current }) => {
      if (current === 'connected') done();
      if (current === 'failed') reject(new Error('connection failed (no supported transport)'));
    });
  });
}

/**
 * Subscribe and resolve with {succeeded: data} or {error: payload} (channel-scoped
 * pusher:subscription_error), whichever comes first.
 */
function subscribe(client, name) {
  const channel = client.subscribe(name);
  const outcome = new Promise((resolve) => {
    // pusher-js emits subscription_succeeded with no argument when the frame has no `data`.
    channel.bind('pusher:subscription_succeeded', (data) =>
      resolve({ channel, succeeded: true, data: data === undefined ? null : data }),
    );
    channel.bind('pusher:subscription_error', (err) => resolve({ channel, error: clone(err) }));
  });
  return { channel, outcome };
}

async function subscribeOk(client, name) {
  const { channel, outcome } = subscribe(client, name);
  const r = await outcome;
  if (r.error) throw new Error(`subscription to ${name} failed: ${JSON.stringify(r.error)}`);
  return channel;
}

/**
 * Collect application events (not pusher:/pusher_internal:) on a channel. With `names`, binds
 * those events individually, which also captures pusher-js's metadata argument (presence
 * channels put the sender's `user_id` there); bind_global does not pass metadata.
 */
function collect(channel, names) {
  const list = [];
  const waiters = [];
  const push = (name, data, metadata) => {
    const ev = { name, data: clone(data) };
    if (metadata !== undefined) ev.metadata = clone(metadata);
    list.push(ev);
    for (const w of waiters.splice(0)) w();
  };
  if (names) {
    for (const n of names) channel.bind(n, (data, metadata) => push(n, data, metadata));
  } else {
    channel.bind_global((name, data) => {
      if (name.startsWith('pusher:') || name.startsWith('pusher_internal:')) return;
      push(name, data);
    });
  }
  list.next = (count = 1) =>
    new Promise((resolve) => {
      const check = () => {
        if (list.length >= count) resolve(list[count - 1]);
        else waiters.push(check);
      };
      check();
    });
  return list;
}

function membersSnapshot(members) {
  const each = [];
  members.each((m) => each.push({ id: m.id, info: clone(m.info) }));
  each.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { count: members.count, each, me: members.me ? { id: members.me.id, info: clone(members.me.info) } : null };
}

function once(emitter, event) {
  return new Promise((resolve) => {
    const handler = (...a) => {
      emitter.unbind(event, handler);
      resolve(a.length > 1 ? a : a[0]);
    };
    emitter.bind(event, handler);
  });
}

// ---------------------------------------------------------------------------------------------
// scenarios

async function publishAndReceive(args, channelName) {
  const sdk = makeServerSdk(args);
  const a = makeClient(args, sdk, 'A');
  stage('connect');
  result.socket_id = await connected(a);
  stage('subscribe');
  const channel = await subscribeOk(a, channelName);
  result.channel = channelName;
  result.subscribed = channel.subscribed;
  const events = collect(channel);
  stage('trigger');
  const payload = { text: 'hello from the HTTP API', n: 1, nested: { ok: true } };
  const resp = await sdk.trigger(channelName, 'interop-event', payload);
  result.trigger_status = resp.status;
  stage('receive');
  await events.next(1);
  await sleep(300); // catch duplicates
  result.events = events;
}

const scenarios = {
  async public(args) {
    await publishAndReceive(args, args.channel || `interop-public-${rand()}`);
  },

  async private(args) {
    await publishAndReceive(args, `private-interop-${rand()}`);
  },

  async presence(args) {
    const leave = args.leave || 'unsubscribe';
    if (!['unsubscribe', 'disconnect'].includes(leave)) throw new Error(`bad --leave ${leave}`);
    result.leave = leave;
    const sdk = makeServerSdk(args);
    const name = `presence-room-${rand()}`;
    result.channel = name;
    const userA = { user_id: 'user-ada', user_info: { name: 'Ada', role: 'admin' } };
    const userB = { user_id: 'user-bo', user_info: { name: 'Bo', tags: ['x', 'y'] } };
    const a = makeClient(args, sdk, 'A', { presence: userA });
    const b = makeClient(args, sdk, 'B', { presence: userB });

    stage('A join');
    await connected(a);
    const chA = await subscribeOk(a, name);
    result.a_after_join = membersSnapshot(chA.members);
    const added = [];
    const removed = [];
    const addedP = new Promise((resolve) =>
      chA.bind('pusher:member_added', (m) => {
        added.push({ id: m.id, info: clone(m.info) });
        resolve();
      }),
    );
    const removedP = new Promise((resolve) =>
      chA.bind('pusher:member_removed', (m) => {
        removed.push({ id: m.id, info: clone(m.info) });
        resolve();
      }),
    );
    result.member_added = added;
    result.member_removed = removed;

    stage('B join');
    await connected(b);
    const chB = await subscribeOk(b, name);
    result.b_after_join = membersSnapshot(chB.members);
    stage('A sees member_added');
    await addedP;
    result.a_after_b_joined = membersSnapshot(chA.members);

    stage(`B leaves (${leave})`);
    if (leave === 'unsubscribe') b.unsubscribe(name);
    else b.disconnect();
    stage('A sees member_removed');
    await removedP;
    await sleep(200);
    result.a_after_b_left = membersSnapshot(chA.members);
  },

  async encrypted(args) {
    if (!args['master-key']) args['master-key'] = crypto.randomBytes(32).toString('base64');
    const sdk = makeServerSdk(args);
    const name = `private-encrypted-interop-${rand()}`;
    result.channel = name;
    const a = makeClient(args, sdk, 'A');
    stage('connect');
    await connected(a);
    // Capture what the server actually relayed for our event (before pusher-js decrypts it).
    const wire = [];
    a.connection.bind('message', (msg) => {
      if (msg.channel === name && msg.event === 'secret-event') wire.push(clone(msg.data));
    });
    stage('subscribe');
    const channel = await subscribeOk(a, name);
    result.subscribed = channel.subscribed;
    const events = collect(channel);
    stage('trigger');
    const payload = { text: 'top secret', n: 42, unicode: 'h\u00e9llo \u2603' };
    const resp = await sdk.trigger(name, 'secret-event', payload);
    result.trigger_status = resp.status;
    stage('receive');
    await events.next(1);
    await sleep(300);
    result.events = events;
    result.decrypted = events[0].data;
    result.wire = wire;
  },

  async 'client-events'(args) {
    const sdk = makeServerSdk(args);
    const userA = { user_id: 'typist-ada', user_info: { name: 'Ada' } };
    const userB = { user_id: 'typist-bo', user_info: { name: 'Bo' } };
    const a = makeClient(args, sdk, 'A', { presence: userA });
    const b = makeClient(args, sdk, 'B', { presence: userB });
    stage('connect');
    await Promise.all([connected(a), connected(b)]);

    async function round(name) {
      const out = { channel: name };
      const [chA, chB] = [await subscribeOk(a, name), await subscribeOk(b, name)];
      const gotA = collect(chA, ['client-typing']);
      const gotB = collect(chB, ['client-typing']);
      out.a_received = gotA;
      out.b_received = gotB;
      // A -> B; A must not see its own event.
      out.a_trigger_sent = chA.trigger('client-typing', { user: 'ada', typing: true });
      await gotB.next(1);
      await sleep(QUIET_MS);
      // Control: B -> A proves A's subscription delivers client events at all.
      const aBefore = gotA.length; // > 0 only if A wrongly got its own event back
      out.b_trigger_sent = chB.trigger('client-typing', { user: 'bo', typing: false });
      await gotA.next(aBefore + 1);
      await sleep(300);
      return out;
    }

    stage('private round');
    result.private = await round(`private-chat-${rand()}`);
    stage('presence round');
    result.presence = await round(`presence-chat-${rand()}`);
    result.user_ids = { A: userA.user_id, B: userB.user_id };
  },

  async signin(args) {
    const sdk = makeServerSdk(args);
    const user = { id: '42', user_info: { name: 'Ada' } };
    const a = makeClient(args, sdk, 'A', { user });
    const received = [];
    const receivedP = new Promise((resolve) =>
      a.user.bind('user-notice', (data) => {
        received.push({ name: 'user-notice', data: clone(data) });
        resolve();
      }),
    );
    result.user_events = received;
    const signinFrame = new Promise((resolve) =>
      a.connection.bind('message', (msg) => {
        if (msg.event === 'pusher:signin_success') resolve(clone(msg.data));
      }),
    );
    stage('connect');
    result.socket_id = await connected(a);
    stage('signin');
    a.signin();
    result.signin_success = await signinFrame;
    await a.user.signinDonePromise;
    result.user_data = clone(a.user.user_data);
    stage('server-to-user subscribe');
    const stu = a.user.serverToUserChannel;
    result.server_to_user_channel = stu ? stu.name : null;
    if (stu) {
      const sub = stu.subscribed
        ? Promise.resolve(true)
        : new Promise((resolve) => {
            stu.bind('pusher:subscription_succeeded', () => resolve(true));
            stu.bind('pusher:subscription_error', (e) => resolve({ error: clone(e) }));
          });
      result.server_to_user_subscribed = await within(sub, STEP_MS, false);
    }
    stage('publish to #server-to-user-42');
    // sendToUser POSTs /apps/{id}/events with channels ["#server-to-user-42"] (trigger() refuses '#').
    const resp = await sdk.sendToUser('42', 'user-notice', { msg: 'hi Ada', n: 7 });
    result.trigger_status = resp.status;
    stage('receive user event');
    await receivedP;
    await sleep(300);
  },

  async 'auth-error'(args) {
    const sdk = makeServerSdk(args);
    const a = makeClient(args, sdk, 'A', { badAuth: true });
    stage('connect');
    result.socket_id = await connected(a);
    const name = `private-interop-denied-${rand()}`;
    result.channel = name;
    stage('subscribe with bad signature');
    const { channel, outcome } = subscribe(a, name);
    const r = await within(outcome, STEP_MS, { timeout: true });
    result.subscription_error = r.error || null;
    result.subscription_succeeded = r.succeeded === true;
    result.subscription_outcome_timeout = !!r.timeout;
    result.channel_subscribed = channel.subscribed;
    await sleep(QUIET_MS);
    result.state_after = a.connection.state;
    result.socket_id_after = a.connection.socket_id;
    // The connection must still be usable: a public subscribe succeeds on the same socket.
    stage('follow-up public subscribe');
    const follow = subscribe(a, `interop-public-after-error-${rand()}`);
    const f = await within(follow.outcome, STEP_MS, { timeout: true });
    result.followup_subscribed = f.succeeded === true;
    result.state_final = a.connection.state;
    result.states = [...a._interopRecord.states]; // before our own disconnect in finish()
    result.connection_errors = clone(a._interopRecord.errors);
  },

  async exclusion(args) {
    const sdk = makeServerSdk(args);
    const a = makeClient(args, sdk, 'A');
    const b = makeClient(args, sdk, 'B');
    const name = `interop-exclusion-${rand()}`;
    result.channel = name;
    stage('connect');
    const [sa, sb] = await Promise.all([connected(a), connected(b)]);
    result.socket_ids = { A: sa, B: sb };
    stage('subscribe');
    const chA = await subscribeOk(a, name);
    const chB = await subscribeOk(b, name);
    const gotA = collect(chA);
    const gotB = collect(chB);
    result.a_received = gotA;
    result.b_received = gotB;
    stage('trigger excluding A');
    const r1 = await sdk.trigger(name, 'excluded-event', { n: 1, excluded: 'A' }, { socket_id: sa });
    result.trigger_status = r1.status;
    stage('B receives');
    await gotB.next(1);
    await sleep(QUIET_MS);
    // Control: same channel, no exclusion -> both receive.
    stage('control trigger');
    // Count before publishing: the server may deliver before the HTTP response arrives.
    const [aBefore, bBefore] = [gotA.length, gotB.length];
    await sdk.trigger(name, 'control-event', { n: 2 });
    await Promise.all([gotA.next(aBefore + 1), gotB.next(bBefore + 1)]);
    await sleep(300);
  },
};

// ---------------------------------------------------------------------------------------------

async function main() {
  PusherClient.logToConsole = false;
  const args = parseArgs(process.argv.slice(2));
  result.scenario = args.scenario;
  await scenarios[args.scenario](args);
  stage('done');
  finish(0);
}

main().catch((e) => finish(1, e));
