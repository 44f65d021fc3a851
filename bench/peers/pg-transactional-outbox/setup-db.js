// Creates pg-transactional-outbox's own outbox table, polling function and indexes (from the
// library's DatabaseSetup), a publication and a logical replication slot, then commits EVENTS
// parking slots with their parking.create messages (1,000 per transaction) through the library's
// initializeMessageStorage: the same rows and payloads as bench/bulk gives outbox.
// env: PGTO_URL (a superuser with REPLICATION: the listener reads the slot), EVENTS.
const { Client } = require('pg');
const { DatabaseSetup, initializeMessageStorage, getDefaultLogger } = require('pg-transactional-outbox');
const { randomUUID } = require('crypto');
const { config } = require('./config');

async function main() {
  const events = Number(process.env.EVENTS);
  const client = new Client({ connectionString: process.env.PGTO_URL });
  await client.connect();
  const setup = {
    outboxOrInbox: 'outbox', database: client.database, schema: 'public', table: 'outbox',
    listenerRole: client.user, publication: 'pgto_pub', replicationSlot: 'pgto_slot',
    nextMessagesName: 'next_outbox_messages',
  };
  await client.query(DatabaseSetup.dropAndCreateTable(setup));
  await client.query(DatabaseSetup.createPollingFunction(setup));
  await client.query(DatabaseSetup.setupPollingIndexes(setup));
  await client.query(`CREATE TABLE parking_slots (uuid uuid PRIMARY KEY, name text NOT NULL,
                        status text NOT NULL, version bigint NOT NULL DEFAULT 1)`);
  await client.query("CREATE PUBLICATION pgto_pub FOR TABLE public.outbox WITH (publish = 'insert')");
  // The slot exists before the messages, so that the listener receives every one of them.
  await client.query("SELECT pg_create_logical_replication_slot('pgto_slot', 'pgoutput')");
  const logger = getDefaultLogger('setup-db');
  logger.level = 'warn';
  const store = initializeMessageStorage(config(), logger);
  for (let first = 1; first <= events; first += 1000) {
    await client.query('BEGIN');
    for (let g = first; g < Math.min(first + 1000, events + 1); g++) {
      const slot = { uuid: randomUUID(), name: `Parking slot ${g} level 2 north wing`, status: 'available', version: 1 };
      await client.query('INSERT INTO parking_slots (uuid, name, status) VALUES ($1, $2, $3)',
        [slot.uuid, slot.name, slot.status]);
      await store({ id: randomUUID(), aggregateType: 'parking_slot', aggregateId: slot.uuid,
        messageType: 'parking.create', payload: slot }, client);
    }
    await client.query('COMMIT');
  }
  await client.end();
}

main().catch((error) => {
  console.error(`pg-transactional-outbox setup-db: ${error.message}`);
  process.exit(1);
});
