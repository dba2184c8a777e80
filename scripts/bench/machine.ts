// The description of the machine a benchmark ran on, so figures are never read without it.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { median } from './stats.ts';

/** What the report says about the machine. */
export interface Machine {
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  node: string;
  pgbench: string;
  /** Hard limit on open files per process (`ulimit -Hn`). */
  openFilesHardLimit: number;
  /** What happened when a throwaway `prlimit` tried to raise it (to `openFilesWanted`). */
  openFilesRaise: string;
  /** Filesystem and device holding the OS temp directory (PostgreSQL's data directory). */
  dataFilesystem: string;
  /** Median time of one 8 kB write + fdatasync there, µs: what a WAL flush costs at best. */
  fdatasyncMicros: number;
}

// Enough flushes for a stable median, few enough to take well under a second on any SSD.
const fdatasyncProbes = 200;

/** Times `fdatasyncProbes` 8 kB write + fdatasync pairs in `dir` (like one WAL page flush). */
function probeFdatasync(dir: string): number {
  const probeDir = mkdtempSync(join(dir, 'parley-fsync-'));
  const fd = openSync(join(probeDir, 'probe'), 'w');
  try {
    const page = Buffer.alloc(8192, 1);
    const samples: number[] = [];
    for (let i = 0; i < fdatasyncProbes; i++) {
      const began = performance.now();
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
      samples.push((performance.now() - began) * 1000);
    }
    return median(samples);
  } finally {
    closeSync(fd);
    rmSync(probeDir, { recursive: true, force: true });
  }
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function filesystemOf(path: string): string {
  let best = { mount: '', text: 'unknown' };
  for (const line of read('/proc/mounts').split('\n')) {
    const [device, mount, type] = line.split(' ');
    if (!device || !mount || !type) continue;
    const inside = path === mount || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
    if (inside && mount.length >= best.mount.length) best = { mount, text: `${type} on ${device} (mounted at ${mount})` };
  }
  return best.text;
}

/** Asks prlimit to start `true` with a higher descriptor limit: harmless, and tells whether it can be raised. */
function probeRaise(wanted: number): string {
  const result = spawnSync('prlimit', [`--nofile=${wanted}:${wanted}`, 'true'], { encoding: 'utf8' });
  if (result.error) return `not tried (${(result.error as NodeJS.ErrnoException).code ?? result.error.message})`;
  if (result.status === 0) return `raising it to ${wanted} works (prlimit)`;
  const why = (result.stderr || `exit ${result.status}`).trim().split(': ').pop();
  return `raising it to ${wanted} fails (prlimit: ${why})${process.getuid?.() === 0 ? ', even as root' : ''}`;
}

/** Reads the machine's description from /proc and the tools' own version output. */
export function describeMachine(pgbenchPath: string, openFilesWanted: number): Machine {
  const cpuinfo = read('/proc/cpuinfo');
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(read('/proc/meminfo'))?.[1] ?? 0);
  const limit = /^Max open files\s+\S+\s+(\S+)/m.exec(read('/proc/self/limits'))?.[1] ?? 'unknown';
  let pgbench = 'unknown';
  try {
    pgbench = execFileSync(pgbenchPath, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // reported as unknown
  }
  return {
    cores: os.availableParallelism(),
    cpuModel,
    memoryBytes: memKb * 1024,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    pgbench,
    openFilesHardLimit: limit === 'unlimited' ? Number.POSITIVE_INFINITY : Number(limit),
    openFilesRaise: probeRaise(openFilesWanted),
    dataFilesystem: filesystemOf(os.tmpdir()),
    fdatasyncMicros: probeFdatasync(os.tmpdir()),
  };
}
