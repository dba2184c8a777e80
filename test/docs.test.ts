// Proves the operator docs stay true: every configuration key of the schema is documented with
// its environment variable in docs/configuration.md, and the README keeps its two-line quickstart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configKeys, envName } from '../src/config/config.ts';

test('docs/configuration.md documents every key and its environment variable', () => {
  const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  const missing = configKeys().filter((key) => !doc.includes(`\`${key}\``) || !doc.includes(`\`${envName(key)}\``));
  assert.deepEqual(missing, []);
});

test('README opens with the two-line quickstart', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes('npm ci && npm start'));
  assert.ok(readme.includes('npm ci && npm test'));
});
