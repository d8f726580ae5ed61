// Minifies eye.js (the readable source) into ../assets/eye.js (what the server serves).
// Run after every change to eye.js: `npm --prefix eye-server/js ci && node eye-server/js/build.mjs`.
// The header records the source's SHA-256, so eye.test.mjs can tell a stale build.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { minify } from 'terser';

const here = new URL('.', import.meta.url);
const source = readFileSync(new URL('eye.js', here), 'utf8');
// 16 hex digits (64 bits) tell a stale build as well as 64 do, in fewer bytes.
const sha = createHash('sha256').update(source).digest('hex').slice(0, 16);
const { code } = await minify(source, {
  ecma: 2017,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: false },
});
const out = `/*! The Eye: eye-server/js/eye.js sha256:${sha} */\n${code}\n`;
writeFileSync(new URL('../assets/eye.js', here), out);
console.log(`assets/eye.js: ${out.length} bytes, ${gzipSync(out, { level: 9 }).length} gzipped`);
