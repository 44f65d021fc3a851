// The listener's settings, as in the library README's outbox example: the replication listener
// with the mutex concurrency controller; max-attempts and poisonous-message protection off.
// The polling listener is left out: with the README's settings it needs minutes for a backlog
// (it re-reads the whole backlog on every poll; see bench/peers/README.md).
function config() {
  const url = new URL(process.env.PGTO_URL);
  return {
    outboxOrInbox: 'outbox',
    dbListenerConfig: {
      host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password), database: url.pathname.slice(1),
    },
    settings: {
      dbSchema: 'public', dbTable: 'outbox', dbPublication: 'pgto_pub', dbReplicationSlot: 'pgto_slot',
      enableMaxAttemptsProtection: false, enablePoisonousMessageProtection: false,
    },
  };
}

module.exports = { config };
