// Extended ORPort cookie files, as tor writes them: exactly 64 bytes, the 32-byte header
// "! Extended ORPort Auth Cookie !\n" and then the 32 secret bytes; mode 0600.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, link, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { COOKIE_LEN } from './protocol.js';

export const COOKIE_FILE_HEADER = Buffer.from('! Extended ORPort Auth Cookie !\n', 'latin1');
export const COOKIE_FILE_LEN = COOKIE_FILE_HEADER.length + COOKIE_LEN;

/** 32 fresh random secret bytes. */
export function generateCookie(): Buffer {
  return randomBytes(COOKIE_LEN);
}

/** The file contents for a cookie. */
export function encodeCookieFile(cookie: Buffer): Buffer {
  if (cookie.length !== COOKIE_LEN) throw new Error(`an ExtORPort cookie is ${COOKIE_LEN} bytes, got ${cookie.length}`);
  return Buffer.concat([COOKIE_FILE_HEADER, cookie]);
}

/** The secret bytes of a cookie file's contents; `name` is for the error messages. */
export function parseCookieFile(data: Buffer, name = 'cookie file'): Buffer {
  if (data.length !== COOKIE_FILE_LEN) {
    throw new Error(`${name}: an Extended ORPort cookie file is exactly ${COOKIE_FILE_LEN} bytes, this one has ${data.length}`);
  }
  if (!data.subarray(0, COOKIE_FILE_HEADER.length).equals(COOKIE_FILE_HEADER)) {
    throw new Error(`${name}: not an Extended ORPort cookie file (its header is not "! Extended ORPort Auth Cookie !")`);
  }
  return Buffer.from(data.subarray(COOKIE_FILE_HEADER.length));
}

/** Reads and validates a cookie file; returns its 32 secret bytes. Errors name the file. */
export async function readCookieFile(path: string): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot read Extended ORPort cookie file ${path}: ${err.code ?? ''} ${err.message}`.trim(), { cause: e });
  }
  return parseCookieFile(data, path);
}

export interface WriteCookieOptions {
  /** Replace an existing file. Without it, an existing file is an error. */
  overwrite?: boolean;
}

/**
 * Writes a cookie file atomically with mode 0600: a temporary file in the same directory, synced,
 * then linked into place (which fails if the file exists) or, with `overwrite`, renamed over it.
 */
export async function writeCookieFile(path: string, cookie: Buffer, opts: WriteCookieOptions = {}): Promise<void> {
  const data = encodeCookieFile(cookie);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    try {
      await fh.chmod(0o600); // in case of a umask that took bits away (it cannot add them)
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.overwrite) {
      await rename(tmp, path);
    } else {
      try {
        await link(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new Error(`Extended ORPort cookie file ${path} already exists; not overwriting it`, { cause: e });
        }
        throw e;
      }
      await unlink(tmp);
    }
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Generates a cookie, writes it to `path` (see writeCookieFile) and returns its secret bytes. */
export async function createCookieFile(path: string, opts: WriteCookieOptions = {}): Promise<Buffer> {
  const cookie = generateCookie();
  await writeCookieFile(path, cookie, opts);
  return cookie;
}
