/**
 * The certificate the config fixtures name (valid/certs/example.{crt,key}),
 * made with the openssl CLI when missing rather than committed: no key
 * material lives in the repository. Its contents never reach a golden file
 * (PEMs are replaced by a placeholder); only its names (example.test,
 * *.example.test) do. Written to a temp name and renamed, so test files
 * running at once never see half a file.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CERTS = join(dirname(fileURLToPath(import.meta.url)), 'valid', 'certs')

export function ensureFixtureCertificates(): void {
  const cert = join(CERTS, 'example.crt')
  const key = join(CERTS, 'example.key')
  if (existsSync(cert) && existsSync(key)) return
  mkdirSync(CERTS, { recursive: true })
  const stem = join(CERTS, `.tmp-${process.pid}`)
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${stem}.key`,
      '-out',
      `${stem}.crt`,
      '-days',
      '36500',
      '-subj',
      '/CN=example.test',
      '-addext',
      'subjectAltName=DNS:example.test,DNS:*.example.test',
    ],
    { stdio: 'ignore' },
  )
  renameSync(`${stem}.key`, key)
  renameSync(`${stem}.crt`, cert)
}
