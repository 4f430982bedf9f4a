// stripe-node (the official `stripe` npm package) against `paysim stripe serve`.
// Usage: node stripe_fidelity.mjs BASE_URL CHECK   (CHECK: sessions | rate_limit |
// server_error | lost_response | webhook). Prints one JSON object; tests/test_blackbox_stripe_node.py
// sets the server's faults before each check and judges what it prints. `webhook` reads
// {"payload", "header", "secret"} on stdin: a delivery as the fake Stripe sent it.
import Stripe from 'stripe';

const [base, check] = process.argv.slice(2);
const url = new URL(base);

function client(key = 'sk_test_node', maxNetworkRetries = 0) {
  // stripe-node's API-base override: host, port, protocol
  return new Stripe(key, {
    host: url.hostname,
    port: Number(url.port),
    protocol: url.protocol.replace(':', ''),
    maxNetworkRetries,
    timeout: 10000,
  });
}

const params = (extra = {}) => ({
  mode: 'payment',
  line_items: [
    {
      price_data: { currency: 'usd', unit_amount: 2500, product_data: { name: 'Program prog_1' } },
      quantity: 2,
    },
  ],
  metadata: { purchase_id: 'pur_node' },
  client_reference_id: 'user_node',
  success_url: 'https://example.test/success',
  cancel_url: 'https://example.test/cancel',
  ...extra,
});

async function caught(promise) {
  try {
    await promise;
    return { type: null };
  } catch (err) {
    return {
      type: err.type,
      statusCode: err.statusCode ?? null,
      code: err.code ?? null,
      param: err.param ?? null,
      message: err.message,
    };
  }
}

async function sessions() {
  const stripe = client();
  const key = { idempotencyKey: 'node-order-1' };
  const created = await stripe.checkout.sessions.create(params(), key);
  const replayed = await stripe.checkout.sessions.create(params(), key);
  const retrieved = await stripe.checkout.sessions.retrieve(created.id);
  const listed = await stripe.checkout.sessions.list({ limit: 3 });
  const expired = await stripe.checkout.sessions.expire(created.id);
  // stripe-node's encoding of an array and a nested filter, as an engine lists what it missed
  const events = await stripe.events.list({
    types: ['checkout.session.expired'],
    created: { gte: 0 },
  });
  return {
    created: { id: created.id, status: created.status, amount_total: created.amount_total },
    replayed: {
      id: replayed.id,
      header: replayed.lastResponse.headers['idempotent-replayed'] ?? null,
    },
    retrieved: { id: retrieved.id, status: retrieved.status },
    listed: listed.data.map((s) => s.id),
    expired: { id: expired.id, status: expired.status },
    events: events.data.map((e) => [e.type, e.data.object.id]),
    bad_filter: await caught(stripe.events.list({ delivery_success: 'maybe' })),
    expire_again: await caught(stripe.checkout.sessions.expire(created.id)),
    key_reused: await caught(
      stripe.checkout.sessions.create(params({ client_reference_id: 'someone_else' }), key),
    ),
    missing: await caught(stripe.checkout.sessions.retrieve('cs_nope')),
    unknown_param: await caught(stripe.checkout.sessions.create(params({ colour: 'red' }))),
    bad_key: await caught(client('pk_test_node').checkout.sessions.retrieve('cs_nope')),
  };
}

async function rateLimit() {
  const stripe = client();
  const results = [];
  for (let i = 0; i < 3; i++) results.push(await caught(stripe.checkout.sessions.list()));
  return { results };
}

async function serverError() {
  return { result: await caught(client().checkout.sessions.retrieve('cs_nope')) };
}

async function lostResponse() {
  return { result: await caught(client('sk_test_node', 1).checkout.sessions.create(params())) };
}

async function webhook() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { payload, header, secret } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const stripe = client();
  const verify = (body) => {
    try {
      return { type: stripe.webhooks.constructEvent(body, header, secret).type };
    } catch (err) {
      return { error: err.type };
    }
  };
  return { genuine: verify(payload), tampered: verify(payload.replace('"livemode"', '"livemodf"')) };
}

const checks = {
  sessions,
  rate_limit: rateLimit,
  server_error: serverError,
  lost_response: lostResponse,
  webhook,
};
if (!checks[check]) {
  console.error(`unknown check ${check}; one of ${Object.keys(checks).join(', ')}`);
  process.exit(2);
}
console.log(JSON.stringify(await checks[check]()));
