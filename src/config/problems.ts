/** A problem found in a config file, with where it is and what would fix it. */
export interface ConfigProblem {
  file: string
  line: number
  column: number
  /**
   * Config path like `routes[2].service`, `(root)` for the whole document, or
   * '' when the problem is in the text rather than at a value (syntax errors, unreadable file).
   */
  path: string
  message: string
}

export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[]
  constructor(problems: ConfigProblem[]) {
    const sorted = sortProblems(problems)
    super(formatProblems(sorted))
    this.name = 'ConfigError'
    this.problems = sorted
  }
}

/** In file order, so the list reads top to bottom like the file; stable for problems at one place. */
export function sortProblems(problems: readonly ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column)
}

export type PathSegment = string | number

export function formatPath(segments: readonly PathSegment[]): string {
  let out = ''
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`
    else out += `[${JSON.stringify(segment)}]`
  }
  return out === '' ? '(root)' : out
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  const lines = problems.map(
    (p) => `${p.file}:${p.line}:${p.column} ${p.path === '' ? '' : `${p.path}: `}${p.message}`,
  )
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`
  return `${count} in configuration:\n${lines.map((l) => `  ${l}`).join('\n')}`
}

/** The closest candidate within a small edit distance, for "did you mean". */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const guess = closest(word, candidates)
  return guess === undefined ? '' : `; did you mean ${JSON.stringify(guess)}?`
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
    }
    previous = current
  }
  return previous[b.length]
}
