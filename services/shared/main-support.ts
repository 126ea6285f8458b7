import { ConfigError } from './env.js';

/** Loads config or ends the process before it listens, naming every bad variable on stderr. */
export function loadConfigOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nrefusing to start.\n`);
      process.exit(1);
    }
    throw err;
  }
}
