/** Tor nicknames: 1 to 19 characters, [A-Za-z0-9] only (tor's is_legal_nickname). */
export function isValidNickname(s: string): boolean {
  return /^[A-Za-z0-9]{1,19}$/.test(s);
}

/** Joins torrc lines; refuses a line break inside a value (it would smuggle in another option). */
export function renderTorrc(lines: Array<string | [string, string | number]>): string {
  const out: string[] = [];
  for (const l of lines) {
    const text = typeof l === 'string' ? l : `${l[0]} ${l[1]}`;
    out.push(text);
  }
  return out.join('\n') + '\n';
}
