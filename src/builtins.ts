import type { AnyCommand } from './commands/command.js';
import { execCommand } from './commands/exec.js';
import { pingCommand } from './commands/ping.js';
import { tcpCommand } from './commands/tcp.js';
import type { AnyHandlerType } from './handlers/handler.js';
import { logHandlerType } from './handlers/log-handler.js';
import { prometheusHandlerType } from './handlers/prometheus-handler.js';

/** The commands every vigil has; plugins add more. */
export function builtinCommands(): AnyCommand[] {
  return [tcpCommand(), pingCommand(), execCommand()];
}

/** The handler types every vigil has; plugins add more. */
export function builtinHandlerTypes(): AnyHandlerType[] {
  return [logHandlerType, prometheusHandlerType];
}
