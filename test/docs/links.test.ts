import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { docPages, root } from '../helpers/docs.js';

const pages = docPages;

/** GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}_\- ]/gu, '')
    .replace(/ /g, '-');

/** A page's text outside fenced code blocks, where headings and links are. */
function prose(page: string): string {
  let fenced = false;
  return readFileSync(join(root, page), 'utf8')
    .split('\n')
    .filter((line) => {
      if (line.startsWith('```')) fenced = !fenced;
      return !fenced && !line.startsWith('```');
    })
    .join('\n');
}

const anchorsOf = (page: string) =>
  new Set([...prose(page).matchAll(/^#{1,6} (.*)$/gm)].map((m) => slug(m[1]!)));

/** Every relative link of a page: [file, anchor] resolved from the repository root. */
function linksOf(page: string): { link: string; file: string; anchor: string | undefined }[] {
  return [...prose(page).matchAll(/\]\(((?!https?:)[^)#\s]*)(?:#([^)\s]+))?\)/g)].map((m) => ({
    link: m[0],
    file: m[1] ? relative(root, normalize(join(root, dirname(page), m[1]))) : page,
    anchor: m[2],
  }));
}

describe('README.md, CONTRIBUTING.md and docs/: every relative link leads somewhere', () => {
  it.each(pages)('%s', (page) => {
    const broken = linksOf(page).filter(({ file, anchor }) => {
      // Nothing outside the repository: a clone holds nothing else.
      if (file.startsWith('..') || !existsSync(join(root, file))) return true;
      return anchor !== undefined && file.endsWith('.md') && !anchorsOf(file).has(anchor);
    });
    expect(broken.map((b) => b.link)).toEqual([]);
  });

  it('the check sees a broken anchor and a missing file (so it can fail)', () => {
    const anchors = anchorsOf('docs/security.md');
    expect(anchors.has('what-is-checked-where')).toBe(true);
    expect(anchors.has('no-such-heading')).toBe(false);
    expect(existsSync(join(root, 'docs/no-such-page.md'))).toBe(false);
    expect(slug("How receiving caches Google's signing keys")).toBe(
      'how-receiving-caches-googles-signing-keys',
    );
    expect(slug('receiving (`services/receiving`)')).toBe('receiving-servicesreceiving');
  });

  it('README.md stays a short page: at most 10 KB; the whole manual, CONTRIBUTING.md included, at most 70 KB', () => {
    expect(readFileSync(join(root, 'README.md')).length).toBeLessThanOrEqual(10 * 1024);
    const total = pages.reduce((sum, page) => sum + readFileSync(join(root, page)).length, 0);
    expect(total).toBeLessThanOrEqual(70_000);
  });
});
