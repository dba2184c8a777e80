// Reading what the kernel knows about a process: resident memory and CPU time, from /proc.
// Linux only, like the benchmark's figures.
import { readdirSync, readFileSync } from 'node:fs';

// Clock ticks per second for /proc/<pid>/stat times; 100 on every Linux this runs on.
const ticksPerSecond = 100;

function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
  if (!match) throw new Error(`Cannot read ${field} of pid ${pid}: no such line in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** VmRSS of a process in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/** VmHWM (peak resident set) of a process in bytes. */
export function peakRssBytes(pid: number): number {
  return statusBytes(pid, 'VmHWM');
}

/** Number of open file descriptors of a process. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

interface StatTimes {
  ppid: number;
  ownSeconds: number;
  /** CPU time of children that have exited and been waited for. */
  childrenSeconds: number;
}

function statTimes(pid: number): StatTimes | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone between listing and reading
  }
  // The command name (field 2) may contain spaces; everything after its closing parenthesis is
  // space-separated: state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const at = (field: number): number => Number(fields[field - 3]);
  return {
    ppid: at(4),
    ownSeconds: (at(14) + at(15)) / ticksPerSecond,
    childrenSeconds: (at(16) + at(17)) / ticksPerSecond,
  };
}

/** CPU seconds used by one process so far (user + system), without its children. */
export function cpuSeconds(pid: number): number {
  return statTimes(pid)?.ownSeconds ?? 0;
}

/**
 * CPU seconds used by a process tree whose children are direct (a postmaster and its backends):
 * the parent, its waited-for children, and its live children. Differences of two readings are
 * exact even when backends start and exit in between.
 */
export function treeCpuSeconds(pid: number): number {
  const root = statTimes(pid);
  if (!root) return 0;
  let total = root.ownSeconds + root.childrenSeconds;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const child = statTimes(Number(name));
    if (child && child.ppid === pid) total += child.ownSeconds;
  }
  return total;
}

/** CPU seconds of this process's children that have exited and been waited for (e.g. pgbench). */
export function exitedChildrenCpuSeconds(): number {
  return statTimes(process.pid)?.childrenSeconds ?? 0;
}

/** CPU used during one phase, in cores (1.0 = one core busy for the whole phase). */
export interface CpuSplit {
  wallSeconds: number;
  appServer: number;
  postgres: number;
  generator: number;
  pgbench: number;
  /** Processes that are not ours (not descendants of this process): other people's work. */
  others: number;
  /** The busiest of those, with their command lines. */
  topOthers: { command: string; cores: number }[];
  /** Interrupt and softirq time (loopback networking runs here, uncharged to any process). */
  interrupts: number;
  /** Every CPU-busy second of the machine, from /proc/stat. */
  machine: number;
  /** Time the hypervisor gave our virtual CPUs to someone else. */
  steal: number;
}

/** Busy, interrupt and steal seconds of the whole machine since boot, from /proc/stat. */
function machineSeconds(): { busy: number; interrupts: number; steal: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  return { busy: (user! + nice! + system! + irq! + softirq!) / ticksPerSecond, interrupts: (irq! + softirq!) / ticksPerSecond, steal: steal! / ticksPerSecond };
}

interface ProcessTimes extends StatTimes {
  pid: number;
}

function allProcesses(): Map<number, ProcessTimes> {
  const out = new Map<number, ProcessTimes>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const times = statTimes(Number(name));
    if (times) out.set(Number(name), { pid: Number(name), ...times });
  }
  return out;
}

function isDescendant(pid: number, ancestor: number, processes: Map<number, ProcessTimes>): boolean {
  let current = processes.get(pid);
  for (let depth = 0; current && depth < 64; depth++) {
    if (current.ppid === ancestor || current.pid === ancestor) return true;
    current = processes.get(current.ppid);
  }
  return false;
}

function commandLine(pid: number): string {
  try {
    let text = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    if (text === '') {
      // Kernel threads have no command line; show their name as ps does.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      text = `[${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}]`;
    }
    return text.length > 90 ? `${text.slice(0, 89)}…` : text;
  } catch {
    return `pid ${pid}`;
  }
}

// Other processes listed by name in the report.
const topOthersShown = 3;

/** Starts measuring CPU of the app server, the PostgreSQL tree, this process, pgbench and everyone else. */
export function startCpuMeter(pids: { appServer?: number | undefined; postmaster?: number | undefined }): () => CpuSplit {
  const wall = process.hrtime.bigint();
  const app = pids.appServer === undefined ? 0 : cpuSeconds(pids.appServer);
  const pg = pids.postmaster === undefined ? 0 : treeCpuSeconds(pids.postmaster);
  const own = process.cpuUsage();
  const children = exitedChildrenCpuSeconds();
  const machine = machineSeconds();
  const before = allProcesses();
  return () => {
    const wallSeconds = Number(process.hrtime.bigint() - wall) / 1e9;
    const ownUsed = process.cpuUsage(own);
    const machineNow = machineSeconds();
    const after = allProcesses();
    const others: { command: string; cores: number }[] = [];
    let othersSeconds = 0;
    for (const [pid, now] of after) {
      if (pid === process.pid || isDescendant(pid, process.pid, after)) continue;
      const used = now.ownSeconds - (before.get(pid)?.ownSeconds ?? 0);
      if (used <= 0) continue;
      othersSeconds += used;
      others.push({ command: commandLine(pid), cores: used / wallSeconds });
    }
    others.sort((a, b) => b.cores - a.cores);
    return {
      wallSeconds,
      appServer: pids.appServer === undefined ? 0 : (cpuSeconds(pids.appServer) - app) / wallSeconds,
      postgres: pids.postmaster === undefined ? 0 : (treeCpuSeconds(pids.postmaster) - pg) / wallSeconds,
      generator: (ownUsed.user + ownUsed.system) / 1e6 / wallSeconds,
      pgbench: (exitedChildrenCpuSeconds() - children) / wallSeconds,
      others: othersSeconds / wallSeconds,
      topOthers: others.slice(0, topOthersShown),
      interrupts: (machineNow.interrupts - machine.interrupts) / wallSeconds,
      machine: (machineNow.busy - machine.busy) / wallSeconds,
      steal: (machineNow.steal - machine.steal) / wallSeconds,
    };
  };
}
