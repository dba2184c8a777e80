#!/usr/bin/env node
// The `parley` command: registers tsx so the TypeScript sources run as they are, then hands over
// to the CLI. Child processes (app servers, agents) are started through this same file.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
