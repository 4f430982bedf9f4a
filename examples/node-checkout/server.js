// A Stripe Checkout purchase + webhook service in Express, on the official `stripe` package,
// for paysim's black-box mode. Two variants, chosen by VARIANT:
//
//   naive   - check-then-act across awaits, no locks, trusts every webhook body (no signature
//             check), cancels without expiring the Checkout Session. paysim must catch it.
//   careful - per-key serialization, conditional transitions, seats reserved and released only
//             by whoever wins a transition, stripe.webhooks.constructEvent on the raw body,
//             a completed session must be the purchase's own and paid; a cancel expires the
//             session first; a payment for a released purchase is re-seated or refunded.
//
// Environment: PORT (0: a free one; the URL is printed on stdout), STRIPE_API_BASE (paysim's
// fake Stripe, e.g. http://127.0.0.1:12111), STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET,
// SINK_URL (paysim's sink: POST /fulfilment and /receipt), VARIANT.
//
// Routes (paysim's default [blackbox] API): POST /purchases, POST /purchases/:id/cancel,
// GET /success, POST /webhooks/stripe, GET /paysim/state, POST /paysim/reset.
// The store is in memory: this process's Maps.

'use strict';

const express = require('express');
const Stripe = require('stripe');

const VARIANT = process.env.VARIANT || 'careful';
if (!['naive', 'careful'].includes(VARIANT)) {
  console.error(`VARIANT must be naive or careful, got ${VARIANT}`);
  process.exit(2);
}
const apiBase = new URL(process.env.STRIPE_API_BASE || 'http://127.0.0.1:12111');
const stripe = new Stripe(process.env.STRIPE_SECRET_KEY || 'sk_test_paysim', {
  host: apiBase.hostname,
  port: Number(apiBase.port || (apiBase.protocol === 'https:' ? 443 : 80)),
  protocol: apiBase.protocol.replace(':', ''),
  maxNetworkRetries: 3,
  timeout: 10000,
});
const WEBHOOK_SECRET = process.env.STRIPE_WEBHOOK_SECRET || 'whsec_paysim';
const SINK_URL = (process.env.SINK_URL || 'http://127.0.0.1:12112').replace(/\/$/, '');

// ---- the store: programs and purchases in paysim's schema

let programs = new Map([['prog_1', { _id: 'prog_1', class_rep_limit: 3, class_rep_count: 0, price_cents: 5000 }]]);
let purchases = new Map();
let nextId = 1;

function newPurchaseId() {
  return `pur_${process.pid}_${String(nextId++).padStart(6, '0')}`;
}

function bySession(sessionId) {
  for (const p of purchases.values()) if (p.stripe_session_id === sessionId) return p;
  return undefined;
}

function pendingOf(userId, programId) {
  for (const p of purchases.values()) {
    if (p.user_id === userId && p.program_id === programId && p.status === 'pending') return p;
  }
  return undefined;
}

// ---- per-key serialization (careful): each key's work runs after the previous one settles

const chains = new Map();
function serialized(key, fn) {
  if (VARIANT === 'naive') return fn();
  const previous = chains.get(key) || Promise.resolve();
  const run = previous.then(fn, fn);
  const tail = run.catch(() => {});
  chains.set(key, tail);
  tail.then(() => { if (chains.get(key) === tail) chains.delete(key); });
  return run;
}

// ---- side effects go to paysim's sink

async function post(path, body) {
  const response = await fetch(SINK_URL + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`sink ${path}: HTTP ${response.status}`);
}

async function fulfil(purchase) {
  await post('/fulfilment', {
    purchase_id: purchase._id,
    user_id: purchase.user_id,
    program_id: purchase.program_id,
    session_id: purchase.stripe_session_id,
  });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await post('/receipt', {
        purchase_id: purchase._id,
        user_id: purchase.user_id,
        idempotency_key: `receipt:${purchase._id}`,
      });
      return;
    } catch (err) {
      if (VARIANT === 'naive') return;
    }
  }
}

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- seats

function reserveSeat(program) {
  if (program.class_rep_count >= program.class_rep_limit) return false;
  program.class_rep_count += 1;
  return true;
}

function releaseSeat(purchase) {
  if (purchase.class_rep) programs.get(purchase.program_id).class_rep_count -= 1;
}

// ---- create

async function createNaive(userId, program, classRep) {
  const existing = pendingOf(userId, program._id);
  if (existing) return existing;
  if (classRep && program.class_rep_count >= program.class_rep_limit) {
    throw new HttpError(409, 'limit_reached', 'no class-rep seats left');
  }
  const purchaseId = newPurchaseId();
  const session = await stripe.checkout.sessions.create(sessionParams(purchaseId, userId, program));
  if (classRep) program.class_rep_count += 1; // checked before the await, acted on after it
  const purchase = {
    _id: purchaseId, user_id: userId, program_id: program._id, class_rep: classRep,
    status: 'pending', stripe_session_id: session.id, checkout_url: session.url,
  };
  purchases.set(purchaseId, purchase);
  return purchase;
}

async function createCareful(userId, program, classRep) {
  return serialized(`purchase:${userId}:${program._id}`, async () => {
    const existing = pendingOf(userId, program._id);
    if (existing && existing.stripe_session_id) return { ...existing, reused: true };
    if (classRep && !reserveSeat(program)) {
      throw new HttpError(409, 'limit_reached', 'no class-rep seats left');
    }
    const purchaseId = newPurchaseId();
    const purchase = {
      _id: purchaseId, user_id: userId, program_id: program._id, class_rep: classRep,
      status: 'pending', stripe_session_id: null,
    };
    purchases.set(purchaseId, purchase); // the intent, recorded before Stripe is called
    try {
      const session = await stripe.checkout.sessions.create(
        sessionParams(purchaseId, userId, program),
        { idempotencyKey: `checkout-session:${purchaseId}` },
      );
      purchase.stripe_session_id = session.id;
      purchase.checkout_url = session.url;
      return purchase;
    } catch (err) {
      purchase.status = 'failed';
      if (classRep) releaseSeat(purchase);
      throw new HttpError(502, 'upstream_error', `Stripe: ${err.message}`);
    }
  });
}

function sessionParams(purchaseId, userId, program) {
  return {
    mode: 'payment',
    client_reference_id: purchaseId,
    metadata: { purchase_id: purchaseId, user_id: userId },
    payment_intent_data: { metadata: { purchase_id: purchaseId } },
    success_url: 'https://example.test/success?session_id={CHECKOUT_SESSION_ID}',
    cancel_url: 'https://example.test/cancel',
    line_items: [{
      quantity: 1,
      price_data: {
        currency: 'usd',
        unit_amount: program.price_cents,
        product_data: { name: `Program ${program._id}` },
      },
    }],
  };
}

// ---- cancel

async function cancelNaive(userId, purchase) {
  if (purchase.status !== 'pending') throw new HttpError(409, 'not_cancellable', purchase.status);
  purchase.status = 'cancelled';
  releaseSeat(purchase); // the Checkout Session stays open: the customer can still pay
}

async function cancelCareful(userId, purchase) {
  return serialized(`session:${purchase.stripe_session_id}`, async () => {
    if (purchase.status !== 'pending') throw new HttpError(409, 'not_cancellable', purchase.status);
    try {
      await stripe.checkout.sessions.expire(purchase.stripe_session_id);
    } catch (err) {
      // already complete (paid) or already expired: the webhook decides, not the cancel
      throw new HttpError(409, 'not_cancellable', `Stripe: ${err.message}`);
    }
    if (purchase.status === 'pending') {
      purchase.status = 'cancelled';
      releaseSeat(purchase);
    }
  });
}

// ---- webhooks

async function webhookNaive(rawBody) {
  const event = JSON.parse(rawBody.toString('utf8')); // trusts every event
  const session = event.data.object;
  const purchase = bySession(session.id) || purchases.get((session.metadata || {}).purchase_id);
  if (!purchase) return 200;
  if (event.type === 'checkout.session.completed') {
    if (purchase.status === 'completed') return 200;
    await fulfil(purchase); // checked before the awaits, completed after them
    purchase.status = 'completed';
  } else if (event.type === 'checkout.session.expired') {
    if (purchase.status === 'pending') {
      purchase.status = 'expired';
      releaseSeat(purchase);
    }
  }
  return 200;
}

async function webhookCareful(rawBody, signature) {
  let event;
  try {
    event = stripe.webhooks.constructEvent(rawBody, signature || '', WEBHOOK_SECRET);
  } catch (err) {
    return 400;
  }
  const session = event.data && event.data.object;
  if (!session || session.object !== 'checkout.session' || typeof session.id !== 'string') {
    return 200; // not an event this service acts on
  }
  return serialized(`session:${session.id}`, async () => {
    const purchase = bySession(session.id);
    // the session must be the purchase's own: its id stored on the purchase, and its metadata
    if (!purchase || (session.metadata || {}).purchase_id !== purchase._id) return 200;
    if (event.type === 'checkout.session.completed' || event.type === 'checkout.session.async_payment_succeeded') {
      if (session.payment_status !== 'paid') return 200; // an async payment still settling
      if (purchase.status === 'completed' || purchase.status === 'refunded') return 200;
      if (purchase.status !== 'pending') {
        // released (cancelled, expired, failed) but paid after all: a seat again, or a refund
        const program = programs.get(purchase.program_id);
        if (purchase.class_rep && !reserveSeat(program)) {
          purchase.status = 'refunded';
          await stripe.refunds.create(
            { payment_intent: session.payment_intent },
            { idempotencyKey: `refund:${purchase._id}` },
          );
          return 200;
        }
      }
      purchase.status = 'completed'; // the transition is won before any await
      await fulfil(purchase);
    } else if (event.type === 'checkout.session.expired' || event.type === 'checkout.session.async_payment_failed') {
      if (purchase.status === 'pending') {
        purchase.status = event.type.endsWith('expired') ? 'expired' : 'failed';
        releaseSeat(purchase);
      }
    }
    return 200;
  });
}

// ---- the app

const app = express();

app.post('/webhooks/stripe', express.raw({ type: '*/*', limit: '512kb' }), async (req, res) => {
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  try {
    const status = VARIANT === 'naive'
      ? await webhookNaive(raw)
      : await webhookCareful(raw, req.get('stripe-signature'));
    res.status(status).json({ received: status === 200 });
  } catch (err) {
    res.status(VARIANT === 'naive' ? 500 : 500).json({ error: 'internal', message: err.message });
  }
});

app.use(express.json({ limit: '16kb' }));

function validId(value) {
  return typeof value === 'string' && value.length > 0 && value.length <= 200;
}

app.post('/purchases', async (req, res) => {
  const body = req.body || {};
  if (!validId(body.user_id) || !validId(body.program_id) || typeof body.class_rep !== 'boolean') {
    return res.status(400).json({ error: 'bad_request', message: 'expected {user_id, program_id, class_rep}' });
  }
  if (req.get('x-user-id') !== undefined && req.get('x-user-id') !== body.user_id) {
    return res.status(403).json({ error: 'forbidden', message: 'X-User-Id does not name user_id' });
  }
  const program = programs.get(body.program_id);
  if (!program) return res.status(404).json({ error: 'not_found', message: 'no such program' });
  try {
    const create = VARIANT === 'naive' ? createNaive : createCareful;
    const purchase = await create(body.user_id, program, body.class_rep);
    res.json({
      purchase_id: purchase._id,
      session_id: purchase.stripe_session_id,
      checkout_url: purchase.checkout_url,
      reused: Boolean(purchase.reused),
    });
  } catch (err) {
    sendError(res, err);
  }
});

app.post('/purchases/:id/cancel', async (req, res) => {
  const body = req.body || {};
  const purchase = purchases.get(req.params.id);
  if (!validId(body.user_id) || !purchase || purchase.user_id !== body.user_id) {
    return res.status(404).json({ error: 'not_found', message: 'no such purchase' });
  }
  try {
    await (VARIANT === 'naive' ? cancelNaive : cancelCareful)(body.user_id, purchase);
    res.json({ purchase_id: purchase._id, cancelled: true });
  } catch (err) {
    sendError(res, err);
  }
});

app.get('/success', (req, res) => {
  res.json({ session_id: String(req.query.session_id || ''), thanks: true });
});

app.get('/paysim/state', (req, res) => {
  res.json({
    programs: [...programs.values()],
    purchases: [...purchases.values()].map((p) => ({
      _id: p._id, user_id: p.user_id, program_id: p.program_id, class_rep: p.class_rep,
      status: p.status, stripe_session_id: p.stripe_session_id,
    })),
  });
});

app.post('/paysim/reset', (req, res) => {
  const list = (req.body || {}).programs;
  if (!Array.isArray(list) || list.length === 0 || !list.every((p) => validId(p.id) && Number.isInteger(p.class_rep_limit))) {
    return res.status(400).json({ error: 'bad_request', message: 'expected {programs: [{id, class_rep_limit}]}' });
  }
  programs = new Map(list.map((p) => [p.id, {
    _id: p.id, class_rep_limit: p.class_rep_limit, class_rep_count: 0,
    price_cents: Number.isInteger(p.price_cents) ? p.price_cents : 5000,
  }]));
  purchases = new Map();
  chains.clear();
  res.json({ reset: true });
});

app.use((err, req, res, next) => { // bodies that are not JSON, or too large
  res.status(err.status || 400).json({ error: 'bad_request', message: err.message });
});

function sendError(res, err) {
  if (err instanceof HttpError) return res.status(err.status).json({ error: err.code, message: err.message });
  if (err && err.type && String(err.type).startsWith('Stripe')) {
    return res.status(502).json({ error: 'upstream_error', message: err.message });
  }
  return res.status(500).json({ error: 'internal', message: String(err && err.message) });
}

const server = app.listen(Number(process.env.PORT || 3000), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
  console.error(`node-checkout (${VARIANT}) listening; Stripe at ${apiBase.origin}; sink at ${SINK_URL}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
