import { browserCommand, screenshotDirOf } from '../commands/browser/browser.js';
import type { AnyCommand } from '../commands/command.js';
import { dnsCommand } from '../commands/dns.js';
import { execCommand } from '../commands/exec/exec.js';
import { grpcCommand } from '../commands/grpc/grpc.js';
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
import { sqlCommand } from '../commands/sql/sql.js';
import { smtpCommand } from '../commands/smtp/smtp.js';
import { snmpCommand } from '../commands/snmp/snmp.js';
import { tcpCommand } from '../commands/tcp.js';
import { tlsCommand } from '../commands/tls/tls.js';
import { webSocketCommand } from '../commands/websocket/websocket.js';
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
  /**
   * The data directory, asked when a browser check fails: its screenshot goes to `<dataDir>/screenshots`.
   * A function, as the daemon knows it only once the config (parsed with these commands) is loaded.
   * None by default: no screenshots.
   */
  readonly dataDir?: () => string | undefined;
}

/** The commands every vigil has; plugins add more. */
export function builtinCommands(options: BuiltinCommandsOptions = {}): AnyCommand[] {
  return [tcpCommand(), httpCommand(), pingCommand(options.pingEngine ?? defaultPingEngine()), execCommand(), heartbeatFileCommand(), heartbeatDirCommand(), heartbeatTableCommand(), dnsCommand(), pushCommand(), peerCommand(), rabbitmqConsumersCommand(), sqlCommand(), grpcCommand(), webSocketCommand(), browserCommand({ screenshotDir: () => screenshotDirOf(options.dataDir?.()) }), tlsCommand(), smtpCommand(), snmpCommand()];
}

/** The handler types every vigil has; plugins add more. */
export function builtinHandlerTypes(): AnyHandlerType[] {
  return [logHandlerType, prometheusHandlerType, webhookHandlerType, postgresResultsHandlerType, redisHandlerType, amqpHandlerType];
}
