/**
 * The real CLI as a child process (`node bin/gatehouse.js ...`), for what only
 * a process shows: signals, exit codes, stdout/stderr. The gateway's log is
 * JSON lines on stderr; the bound ports come from its `gatehouse started` line.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { eventually } from './eventually.ts'

export const BIN = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url))
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface LogLine {
  level: number
  msg: string
  [field: string]: unknown
}

export interface CliRun {
  readonly child: ChildProcess
  /** Everything written so far. */
  stdout(): string
  stderr(): string
  /** stderr lines that parse as JSON log lines. */
  logs(): LogLine[]
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Waits for a log line whose msg includes `text` (and that passes `where`). */
  waitForLog(text: string, where?: (line: LogLine) => boolean, timeout?: number): Promise<LogLine>
  /** Sends a signal, unless the process has exited. */
  signal(name: NodeJS.Signals): void
}

export interface CliOptions {
  env?: Record<string, string>
  cwd?: string
  /** The node binary (default: the one running the tests). */
  node?: string
}

export function runCli(args: string[], options: CliOptions = {}): CliRun {
  const child = spawn(options.node ?? process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk
  })
  let done = false
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      done = true
      resolve({ code, signal })
    })
  })
  const logs = () =>
    err
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine)
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    logs,
    exited,
    waitForLog: async (text, where = () => true, timeout = 15_000) => {
      const found = await eventually(
        () => {
          const line = logs().find((l) => l.msg.includes(text) && where(l))
          if (line) return line
          if (done) throw new Error(`exited before logging ${JSON.stringify(text)}; stderr:\n${err}`)
          return false
        },
        { timeout },
      )
      return found as LogLine
    },
    signal: (name) => {
      if (!done) child.kill(name)
    },
  }
}

export interface StartedCli extends CliRun {
  /** Bound port of the first listener, or of the one named. */
  port(name?: string): number
}

/** `gatehouse start -c FILE` until its `gatehouse started` line. */
export async function startCli(
  file: string,
  options: CliOptions & { args?: string[] } = {},
): Promise<StartedCli> {
  const run = runCli(['start', '-c', file, ...(options.args ?? [])], options)
  try {
    const started = await run.waitForLog('gatehouse started')
    const listeners = started.listeners as Record<string, number>
    return {
      ...run,
      port: (name) => (name === undefined ? Object.values(listeners)[0] : listeners[name]),
    }
  } catch (error) {
    run.signal('SIGKILL')
    throw error
  }
}

/** Stops a CLI process that a test left running (SIGKILL: the test already failed or is done with it). */
export async function killCli(run: CliRun | undefined): Promise<void> {
  if (!run) return
  run.signal('SIGKILL')
  await run.exited
}
