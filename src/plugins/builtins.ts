import type { AnyCommand } from '../commands/command.js';
import { dnsCommand } from '../commands/dns.js';
import { execCommand } from '../commands/exec/exec.js';
import { httpCommand } from '../commands/http/http.js';
import { heartbeatDirCommand } from '../commands/heartbeat/heartbeat-dir.js';
import { heartbeatFileCommand } from '../commands/heartbeat/heartbeat-file.js';
import { heartbeatTableCommand } from '../commands/heartbeat/heartbeat-table.js';
import { peerCommand } from '../commands/peer.js';
import { pingCommand } from '../commands/ping/ping.js';
import type { PingEngine } from '../commands/ping/ping-engine.js';
import { defaultPingEngine } from '../commands/ping/ping-engine-choice.js';
import { pushCommand } from '../commands/push.js';
import { rabbitmqConsumersCommand } from '../commands/rabbitmq-consumers.js';
import { tcpCommand } from '../commands/tcp.js';
import { amqpHandlerType } from '../handlers/amqp/amqp-handler.js';
import type { AnyHandlerType } from '../handlers/handler.js';
import { logHandlerType } from '../handlers/log-handler.js';
import { postgresResultsHandlerType } from '../handlers/postgres-results-handler.js';
import { prometheusHandlerType } from '../handlers/prometheus/prometheus-handler.js';
import { redisHandlerType } from '../handlers/redis-handler.js';
import { webhookHandlerType } from '../handlers/webhook/webhook-handler.js';

export interface BuiltinCommandsOptions {
  /** The engine the `ping` command sends its packets with. Default `defaultPingEngine()` (fping when found). */
  readonly pingEngine?: PingEngine;
}

/** The commands every vigil has; plugins add more. */
export function builtinCommands(options: BuiltinCommandsOptions = {}): AnyCommand[] {
  return [tcpCommand(), httpCommand(), pingCommand(options.pingEngine ?? defaultPingEngine()), execCommand(), heartbeatFileCommand(), heartbeatDirCommand(), heartbeatTableCommand(), dnsCommand(), pushCommand(), peerCommand(), rabbitmqConsumersCommand()];
}

/** The handler types every vigil has; plugins add more. */
export function builtinHandlerTypes(): AnyHandlerType[] {
  return [logHandlerType, prometheusHandlerType, webhookHandlerType, postgresResultsHandlerType, redisHandlerType, amqpHandlerType];
}
