// pg-transactional-outbox as a relay: its replication listener hands each outbox message to a
// handler that publishes it, persistent, on an amqplib confirm channel to the durable queue QUEUE,
// and resolves only on the broker's ack, so the library marks a message processed only after its
// confirm (as outbox's relay does). Stops on SIGTERM.
// env: PGTO_URL, BROKER_URL, QUEUE.
const amqp = require('amqplib');
const {
  initializeReplicationMessageListener, createReplicationMutexConcurrencyController, getDefaultLogger,
} = require('pg-transactional-outbox');
const { config } = require('./config');

async function main() {
  const logger = getDefaultLogger('relay');
  logger.level = 'warn';
  const connection = await amqp.connect(process.env.BROKER_URL);
  const channel = await connection.createConfirmChannel();
  const queue = process.env.QUEUE;
  await channel.assertQueue(queue, { durable: true });
  const publisher = {
    handle: (message) => new Promise((resolve, reject) => {
      const body = Buffer.from(JSON.stringify({ id: message.id, type: message.messageType,
        aggregateId: message.aggregateId, payload: message.payload, createdAt: message.createdAt }));
      channel.publish('', queue, body, { persistent: true, contentType: 'application/json', messageId: message.id },
        (error) => (error ? reject(error) : resolve()));
    }),
  };
  const [shutdown] = initializeReplicationMessageListener(config(), publisher, logger, {
    concurrencyStrategy: createReplicationMutexConcurrencyController(),
    messageProcessingTimeoutStrategy: () => 2000,  // the README example's value
  });
  process.on('SIGTERM', async () => {
    await shutdown();
    await connection.close().catch(() => {});
    process.exit(0);
  });
  console.log('ready');
}

main().catch((error) => {
  console.error(`pg-transactional-outbox relay: ${error.message}`);
  process.exit(1);
});
