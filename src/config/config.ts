// Loading and checking configuration: a YAML (or JSON) file, then PARLEY_* environment overrides,
// validated by the one schema. Problems come back as one line each, naming the key.
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ParleyError } from '../errors/errors.ts';
import { configSchema, type Config, type ConfigInput } from './schema.ts';

export { configSchema, type Config, type ConfigInput } from './schema.ts';
export { lintConfig, type Finding } from './lint.ts';
export {
  alertingConfigSchema,
  channelSchema,
  NEXT_ON_CALL,
  ON_CALL,
  severities,
  weekdays,
  type AlertingConfig,
  type AlertingConfigInput,
  type ChannelConfig,
  type DeliveryConfig,
  type PolicyConfig,
  type RotaConfig,
  type Severity,
} from './alerting-schema.ts';

/** Every leaf key of the schema as a dotted path, e.g. `cluster.leaseTtlMs`. */
export function configKeys(): string[] {
  return leaves().map((leaf) => leaf.key);
}

/** Every leaf of the schema: its dotted key and whether its value is a string. */
function leaves(): { key: string; isString: boolean }[] {
  const out: { key: string; isString: boolean }[] = [];
  walk(configSchema, [], out);
  return out;
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (let i = 0; i < 10; i++) {
    const def = current._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if ((def.type === 'default' || def.type === 'optional' || def.type === 'prefault') && def.innerType) {
      current = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      current = def.in;
    } else {
      return current;
    }
  }
  return current;
}

function walk(schema: z.core.$ZodType, path: string[], out: { key: string; isString: boolean }[]): void {
  const inner = unwrap(schema);
  const def = inner._zod.def as { type: string; shape?: Record<string, z.core.$ZodType> };
  if (def.type === 'object' && def.shape) {
    for (const [key, child] of Object.entries(def.shape)) walk(child, [...path, key], out);
  } else {
    out.push({ key: path.join('.'), isString: def.type === 'string' });
  }
}

/** The environment variable that overrides a key: `http.port` → `PARLEY_HTTP_PORT`. */
export function envName(key: string): string {
  return (
    'PARLEY_' +
    key
      .split('.')
      .map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('_')
  );
}

/** Environment variables that override configuration (PARLEY_HTTP_PORT=8081), as a nested object. */
export function envOverrides(env: NodeJS.ProcessEnv): { values: Record<string, unknown>; problems: string[] } {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const { key, isString } of leaves()) {
    const raw = env[envName(key)];
    if (raw === undefined || raw === '') continue;
    // A string key takes the variable as it is: read as YAML, a secret of digits would become a
    // number and one with ": " or a leading "*" a mapping or an error.
    let value: unknown = raw;
    if (!isString) {
      try {
        value = parseYaml(raw);
      } catch {
        problems.push(`${envName(key)}: cannot parse "${raw}"`);
        continue;
      }
    }
    setPath(values, key.split('.'), value);
  }
  return { values, problems };
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (typeof next === 'object' && next !== null && !Array.isArray(next)) {
      node = next as Record<string, unknown>;
    } else {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    }
  }
  node[path[path.length - 1]!] = value;
}

function merge(base: unknown, over: unknown): unknown {
  if (typeof base === 'object' && base !== null && !Array.isArray(base) && typeof over === 'object' && over !== null && !Array.isArray(over)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over)) out[k] = merge(out[k], v);
    return out;
  }
  return over === undefined ? base : over;
}

/** One line per schema problem, each naming the key. */
export function describeIssues(error: z.ZodError): string[] {
  const lines: string[] = [];
  for (const issue of error.issues) {
    const key = issue.path.map(String).join('.') || '(top level)';
    if (issue.code === 'unrecognized_keys') {
      for (const unknown of issue.keys) {
        lines.push(`${key === '(top level)' ? unknown : `${key}.${unknown}`}: unknown key`);
      }
    } else {
      lines.push(`${key}: ${issue.message}`);
    }
  }
  return lines;
}

/** Validates a configuration object; returns the config or the problems, one line each. */
export function checkConfig(input: unknown): { ok: true; config: Config } | { ok: false; problems: string[] } {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return { ok: true, config: result.data };
  return { ok: false, problems: describeIssues(result.error) };
}

/** Reads a YAML/JSON file into a plain object; problems name the file. */
export function readConfigFile(file: string): { ok: true; value: unknown } | { ok: false; problems: string[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { ok: false, problems: [`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? String(error)})`] };
  }
  try {
    const value: unknown = parseYaml(text);
    if (value !== null && value !== undefined && (typeof value !== 'object' || Array.isArray(value))) {
      return { ok: false, problems: [`${file}: must be a mapping of keys (got ${Array.isArray(value) ? 'a list' : typeof value})`] };
    }
    return { ok: true, value: value ?? {} };
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` line ${error.linePos[0].line}` : '';
    return { ok: false, problems: [`${file}:${where} not valid YAML: ${(error as Error).message.split('\n')[0]}`] };
  }
}

/** File, then environment, then schema. Throws ParleyError('config_invalid') listing every problem. */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Config {
  const problems: string[] = [];
  let fromFile: unknown = {};
  if (options.file) {
    const read = readConfigFile(options.file);
    if (read.ok) fromFile = read.value;
    else problems.push(...read.problems);
  }
  const env = envOverrides(options.env ?? process.env);
  problems.push(...env.problems);
  if (problems.length === 0) {
    const checked = checkConfig(merge(merge(fromFile, env.values), options.overrides ?? {}));
    if (checked.ok) return checked.config;
    problems.push(...checked.problems);
  }
  throw new ParleyError('config_invalid', problems.join('; '), { details: problems });
}
