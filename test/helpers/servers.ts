import type { Logger } from '../../services/shared/logger.js';
import type { Server } from 'node:http';
import type { Express } from 'express';
import { createMetadataEmulator, type EmulatorStats } from '../../local/metadata-emulator/app.js';
import { loadEmulatorConfig, type EmulatorConfig } from '../../local/metadata-emulator/config.js';
import { createSigningKey, type SigningKey } from '../../local/metadata-emulator/signing-key.js';
import { createCalling } from '../../services/calling/app.js';
import { loadCallingConfig } from '../../services/calling/config.js';
import { createReceiving } from '../../services/receiving/app.js';
import { loadReceivingConfig } from '../../services/receiving/config.js';
import type { Env } from '../../services/shared/env.js';
import { listen, portOf } from '../../services/shared/server.js';
import { silentLogger } from './logs.js';

export interface Running {
  url: string;
  /** host:port, as GCE_METADATA_HOST wants it. */
  host: string;
  server: Server;
  close(): Promise<void>;
}

/** Serves an app on 127.0.0.1, at an ephemeral port unless one is given. */
export async function serve(app: Express, port = 0): Promise<Running> {
  const server = await listen(app, '127.0.0.1', port);
  const host = `127.0.0.1:${portOf(server)}`;
  return {
    url: `http://${host}`,
    host,
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface RunningEmulator extends Running {
  key: SigningKey;
  config: EmulatorConfig;
  stats: EmulatorStats;
  endWaits(): void;
  jwksUrl: URL;
}

export async function startEmulator(
  env: Record<string, string> = {},
  options: { key?: SigningKey; now?: () => number; logger?: Logger } = {},
): Promise<RunningEmulator> {
  const config = loadEmulatorConfig(env);
  const key = options.key ?? (await createSigningKey());
  const logger = options.logger ?? silentLogger();
  const emulator = createMetadataEmulator({
    config,
    key,
    logger,
    ...(options.now ? { now: options.now } : {}),
  });
  const running = await serve(emulator.app);
  return {
    ...running,
    key,
    config,
    stats: emulator.stats,
    endWaits: emulator.endWaits,
    jwksUrl: new URL(`${running.url}/oauth2/v3/certs`),
  };
}

export const nowS = (): number => Math.floor(Date.now() / 1000);

/** receiving from its env, wired as main.ts wires it, on an ephemeral port. */
export function startReceiving(
  env: Env,
  logger: Logger = silentLogger(),
  port = 0,
): Promise<Running> {
  return serve(createReceiving(loadReceivingConfig(env), logger), port);
}

/** calling from its env, wired as main.ts wires it, on an ephemeral port. */
export function startCalling(env: Env, logger: Logger = silentLogger()): Promise<Running> {
  return serve(createCalling(loadCallingConfig(env), logger));
}
