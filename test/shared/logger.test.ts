import { Writable } from 'node:stream';
import { createLogger } from '../../services/shared/logger.js';

/** Each JSON line a logger at `level` writes, parsed. */
function written(level: Parameters<typeof createLogger>[1]) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('receiving', level, destination), lines };
}

describe('createLogger: the shape Cloud Logging reads', () => {
  it("writes severity in Cloud Logging's names, message, an ISO time and the service", () => {
    const { logger, lines } = written('trace');
    logger.trace('t');
    logger.debug('d');
    logger.info({ caller: 'a@b' }, 'i');
    logger.warn('w');
    logger.error('e');
    logger.fatal('f');
    expect(lines.map((l) => [l.severity, l.message])).toEqual([
      ['DEBUG', 't'],
      ['DEBUG', 'd'],
      ['INFO', 'i'],
      ['WARNING', 'w'],
      ['ERROR', 'e'],
      ['CRITICAL', 'f'],
    ]);
    expect(lines[2]).toMatchObject({
      service: 'receiving',
      caller: 'a@b',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    expect(lines[2]).not.toHaveProperty('level');
    expect(lines[2]).not.toHaveProperty('msg');
  });

  it('writes nothing below its level', () => {
    const { logger, lines } = written('warn');
    logger.info('no');
    logger.warn('yes');
    expect(lines.map((l) => l.message)).toEqual(['yes']);
  });
});
