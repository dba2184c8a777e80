// The last hour of samples in memory, oldest first: what the evaluator's trend rules, `parley
// status` and `GET /v1/ops/cluster` read. 3,600 samples of a three-node cluster are a few MB.
import type { Sample } from './samples.ts';

export interface History {
  add(sample: Sample): void;
  /** Every sample kept, oldest first. */
  all(): readonly Sample[];
  /** Samples taken at or after `sinceMs`, oldest first. */
  since(sinceMs: number): Sample[];
  latest(): Sample | undefined;
}

export function createHistory(keepMs: number): History {
  const samples: Sample[] = [];
  return {
    add(sample) {
      // A clock stepped back must not break the order the evaluator relies on.
      while (samples.length > 0 && samples[samples.length - 1]!.timestampMs >= sample.timestampMs) samples.pop();
      samples.push(sample);
      let drop = 0;
      while (drop < samples.length && samples[drop]!.timestampMs < sample.timestampMs - keepMs) drop++;
      if (drop > 0) samples.splice(0, drop);
    },
    all: () => samples,
    since: (sinceMs) => samples.filter((s) => s.timestampMs >= sinceMs),
    latest: () => samples[samples.length - 1],
  };
}
