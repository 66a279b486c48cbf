/**
 * vigil — a check poller and heartbeat monitor on one Node.js event loop.
 *
 * Glossary:
 * - Check: one thing to watch (CheckSpec), with its runtime state (CheckState) and next due time.
 * - Command: performs a kind of check (`tcp`, …): parses its attributes once, then `run` → outcome.
 * - Result: one run's outcome: state `ok`/`warn`/`crit`/`unknown`, reason, message, Metrics, timing.
 * - Incident: an outage of one check, opened on a HARD non-OK state and resolved on recovery.
 * - Handler: receives every outcome (`mutate` in order, then `process` concurrently).
 * - Queue: where checks wait (MemoryQueue, TrackedMemoryQueue, PostgresQueue).
 * - Pool: a share of the server's concurrency reserved for some checks.
 * - Server: the loop that claims due checks, runs them, and gives them back.
 */
export { Server, type ServerOptions, type ServerStats } from './server/server.js';
export type { ServerEvents, CheckStartEvent, CheckFinishEvent, IncidentEventPayload, ServerErrorEvent } from './server/events.js';
export { systemClock, type Clock } from './core/clock.js';
export { startDaemon, type Daemon, type DaemonOptions } from './daemon/daemon.js';
export { loadConfig, parseConfig, type VigilConfig } from './config/config.js';
export { configJsonSchema } from './config/json-schema.js';
export { ValidationError, type Issue } from './validation/issues.js';
export { duration, integer, port, nonEmptyString, parseDuration } from './validation/schema-types.js';

export { CompletionRefusedError, type Queue, type QueueEvent } from './queues/queue.js';
export { MemoryQueue } from './queues/memory-queue.js';
export { TrackedMemoryQueue, type TrackedMemoryQueueOptions } from './queues/tracked-memory-queue.js';
/** @deprecated The name `TrackedMemoryQueue` had before "pool" came to mean a share of concurrency only. */
export { TrackedMemoryQueue as TrackedMemoryPool } from './queues/tracked-memory-queue.js';
export { PostgresQueue, LeaseLostError, CompletionDroppedError } from './queues/postgres/postgres-queue.js';
export { migrate } from './postgres/migrations.js';
export { isCheckRegistry, type CheckRegistry, type CheckStatus } from './checks/check-registry.js';
export { ResultHistory, type ResultHistoryOptions } from './results/result-history.js';

export { initialCheckState, type Check, type CheckSpec, type CheckState, type StateType } from './checks/check.js';

export {
  defineCommand,
  listenForAbort,
  type AbortListener,
  type Command,
  type AnyCommand,
  type CommandContext,
  type CommandDefinition,
  type ParseResult,
  type Ping,
  type PingReceiver,
} from './commands/command.js';
export { tcpCommand, type TcpAttributes } from './commands/tcp.js';
export { httpCommand, type HttpAttributes } from './commands/http/http.js';
export { pingCommand, type PingAttributes } from './commands/ping/ping.js';
export { processPingEngine, type PingEngine, type PingTarget, type PingReply } from './commands/ping/ping-engine.js';
export { execCommand, type ExecAttributes } from './commands/exec/exec.js';
export { dnsCommand, type DnsAttributes } from './commands/dns.js';
export { pushCommand, type PushAttributes } from './commands/push.js';
export { peerCommand, type PeerAttributes } from './commands/peer.js';
export { rabbitmqConsumersCommand, type RabbitmqConsumersAttributes } from './commands/rabbitmq-consumers.js';
export { heartbeatFileCommand, type HeartbeatFileAttributes } from './commands/heartbeat/heartbeat-file.js';
export { heartbeatDirCommand, type HeartbeatDirAttributes } from './commands/heartbeat/heartbeat-dir.js';
export { heartbeatTableCommand } from './commands/heartbeat/heartbeat-table.js';
export { sqlCommand, type SqlAttributes } from './commands/sql/sql.js';
export { grpcCommand, type GrpcAttributes } from './commands/grpc/grpc.js';
export { webSocketCommand, type WebSocketAttributes } from './commands/websocket/websocket.js';
export { tlsCommand, type TlsAttributes } from './commands/tls/tls.js';
export { smtpCommand, type SmtpAttributes } from './commands/smtp/smtp.js';
export { snmpCommand, type SnmpAttributes, type SnmpCommandOptions } from './commands/snmp/snmp.js';
export { browserCommand, screenshotDirOf, type BrowserCommand, type BrowserCommandOptions } from './commands/browser/browser.js';
export type { BrowserAttributes, BrowserStep } from './commands/browser/attributes.js';
export { startDatabaseHeartbeat, type DatabaseHeartbeat, type DatabaseHeartbeatOptions } from './heartbeats/database-heartbeat.js';
export { postgresResultsHandlerType } from './handlers/postgres-results-handler.js';
export { amqpHandlerType } from './handlers/amqp/amqp-handler.js';
export { redisHandlerType } from './handlers/redis-handler.js';
export { startHeartbeatFile, type Heartbeat, type HeartbeatOptions } from './heartbeats/heartbeat-writer.js';
export { superviseWithHeartbeat, type SuperviseOptions } from './heartbeats/supervise.js';
export { parseHeartbeat, serializeHeartbeat, type HeartbeatRecord } from './heartbeats/heartbeat-file-format.js';

export { defineHandler, type Handler, type HandlerType, type HandlerContext, type HandlerDeps, type Outcome } from './handlers/handler.js';
export { logHandlerType } from './handlers/log-handler.js';
export { prometheusHandlerType } from './handlers/prometheus/prometheus-handler.js';
export { webhookHandlerType, type WebhookHandlerOptions, type WebhookPayload } from './handlers/webhook/webhook-handler.js';
export { builtinCommands, builtinHandlerTypes } from './plugins/builtins.js';

export { States, stateCode, severity, type State, type Result, type CommandOutcome } from './results/result.js';
export { gauge, counter, type Metric, type MetricKind } from './results/metric.js';
export type { Incident, IncidentEvent, IncidentEventType } from './results/incident.js';

/** zod, for plugin authors who describe their attributes with `defineCommand`. */
export { z } from 'zod';
