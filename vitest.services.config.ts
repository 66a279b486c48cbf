import { defineConfig } from 'vitest/config';

/**
 * Tests that need servers `npm test` cannot start by itself (RabbitMQ with its management plugin,
 * Redis): `npm run test:services`. Each fails, naming the server and how to start it, when one is down.
 */
export default defineConfig({
  test: {
    include: ['test/services/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One broker for all: files run one after another.
    fileParallelism: false,
  },
});
