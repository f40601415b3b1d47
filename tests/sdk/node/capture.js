// Sends Sluice's e2e events through the official Node Sentry SDK.
//
// SENTRY_DSN names the Sluice under test. Captured: one exception twice
// from the same code site, a message, and a chained exception
// (new Error(..., { cause })).
const Sentry = require("@sentry/node");

function checkout(order) {
  throw new TypeError(`node order ${order} cannot be paid`);
}

function loadCart() {
  try {
    JSON.parse("{");
  } catch (cause) {
    throw new Error("node cart failed to load", { cause });
  }
}

async function main() {
  Sentry.init({
    dsn: process.env.SENTRY_DSN,
    environment: "e2e-node",
    release: "node-e2e@1.0",
    serverName: "node-host",
  });
  Sentry.setTag("suite", "sentry-e2e");
  for (const order of [2001, 2002]) {
    try {
      checkout(order);
    } catch (e) {
      Sentry.captureException(e);
    }
  }
  Sentry.captureMessage("node e2e message", "warning");
  try {
    loadCart();
  } catch (e) {
    Sentry.captureException(e);
  }
  if (!(await Sentry.flush(15000))) {
    console.error("flush timed out");
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
