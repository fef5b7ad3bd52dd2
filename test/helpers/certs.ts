/**
 * Throwaway certificates made at test time with the `openssl` CLI: a small CA
 * and leaf certificates for the DNS names a test needs. Everything lives in a
 * temp folder that `remove()` deletes; no key material is ever committed.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TestCertificate {
  /** The DNS names in the certificate's subjectAltName; the first is also its CN. */
  readonly names: readonly string[]
  readonly certFile: string
  readonly keyFile: string
  readonly cert: string
  readonly key: string
}

export interface TestPki {
  readonly dir: string
  /** The CA that signed every leaf: give `ca.cert` to clients as their trust anchor. */
  readonly ca: { readonly certFile: string; readonly cert: string }
  /** Leaf certificates by their first name, e.g. `certs['*.example.com']`. */
  readonly certs: Readonly<Record<string, TestCertificate>>
  /** Issues one more leaf for the given names. */
  issue(names: readonly string[]): Promise<TestCertificate>
  remove(): Promise<void>
}

/**
 * A CA plus one leaf per entry: a string is one DNS name, an array several
 * names in one certificate. P-256 keys keep generation fast on a busy machine.
 */
export async function makeCertificates(leaves: readonly (string | readonly string[])[]): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-certs-'))
  try {
    const caKey = join(dir, 'ca.key')
    const caCertFile = join(dir, 'ca.crt')
    await openssl([
      'req',
      '-x509',
      ...newKey(caKey),
      '-out',
      caCertFile,
      '-days',
      '2',
      '-subj',
      '/CN=Gatehouse Test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ])
    let serial = 1
    const issue = async (names: readonly string[]): Promise<TestCertificate> => {
      if (names.length === 0) throw new Error('a certificate needs at least one name')
      const stem = join(dir, `leaf-${serial}-${names[0].replace(/[^A-Za-z0-9.-]/g, '_')}`)
      const keyFile = `${stem}.key`
      const certFile = `${stem}.crt`
      const extFile = `${stem}.ext`
      await writeFile(
        extFile,
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth',
          `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}`,
          '',
        ].join('\n'),
      )
      await openssl(['req', ...newKey(keyFile), '-out', `${stem}.csr`, '-subj', `/CN=${names[0]}`])
      await openssl([
        'x509',
        '-req',
        '-in',
        `${stem}.csr`,
        '-CA',
        caCertFile,
        '-CAkey',
        caKey,
        '-set_serial',
        String(serial++),
        '-days',
        '2',
        '-extfile',
        extFile,
        '-out',
        certFile,
      ])
      const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')])
      return { names: [...names], certFile, keyFile, cert, key }
    }
    const certs: Record<string, TestCertificate> = {}
    for (const leaf of leaves) {
      const names = typeof leaf === 'string' ? [leaf] : leaf
      certs[names[0]] = await issue(names)
    }
    return {
      dir,
      ca: { certFile: caCertFile, cert: await readFile(caCertFile, 'utf8') },
      certs,
      issue,
      remove: () => rm(dir, { recursive: true, force: true }),
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

function newKey(keyFile: string): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile]
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 20_000 })
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? ''
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`)
  }
}
