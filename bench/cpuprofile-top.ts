// Summarizes a V8 .cpuprofile (node --cpu-prof): self time by function and by file, top N.
//   node dist/bench/cpuprofile-top.js FILE [N]
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
const [file, nArg] = process.argv.slice(2);
if (!file) throw new Error('usage: cpuprofile-top FILE [N]');
const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map<string, number>();
const files = new Map<string, number>();
for (const [id, t] of self) {
  const c = byId.get(id)!.callFrame;
  const short = c.url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^node:/, 'node:');
  const key = `${c.functionName || '(anonymous)'} ${short}${c.url ? `:${c.lineNumber + 1}` : ''}`;
  fn.set(key, (fn.get(key) ?? 0) + t);
  const fk = c.url ? short : `(${c.functionName})`;
  files.set(fk, (files.get(fk) ?? 0) + t);
}
const n = Number(nArg ?? 25);
const show = (m: Map<string, number>): string =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, t]) => `${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
process.stdout.write(`total ${(total / 1e6).toFixed(2)} s sampled\n\nby function (self):\n${show(fn)}\n\nby file (self):\n${show(files)}\n`);
