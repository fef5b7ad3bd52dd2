// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are config text with ${VAR} in it
/** `${VAR}` interpolation: what the loader fills in, what stays literal, and what it refuses. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, loadConfigText } from '../../src/config/index.ts'
import { type Env, parseText } from '../../src/config/load.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'

/** The value of `v:` in a one-line document, after interpolation. */
function interpolated(yaml: string, env: Env): unknown {
  const { loaded, problems } = parseText('t.yaml', `v: ${yaml}\n`, env)
  assert.deepEqual(problems, [])
  assert.ok(loaded)
  return (loaded.data as { v: unknown }).v
}

function problemsOf(yaml: string, env: Env): string[] {
  return parseText('t.yaml', yaml, env).problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`)
}

describe('interpolation', () => {
  const env = {
    PORT: '8080',
    HOST: 'example.test',
    YES: 'true',
    EMPTY: '',
    NESTED: '${PORT}',
    LIST: '[1, 2]',
  }

  it('re-types a plain scalar that is only ${VAR}', () => {
    assert.equal(interpolated('${PORT}', env), 8080)
    assert.equal(interpolated('${YES}', env), true)
    assert.equal(interpolated('${MISSING:-30}', env), 30)
  })

  it('keeps quoted and block scalars as strings', () => {
    assert.equal(interpolated('"${PORT}"', env), '8080')
    assert.equal(interpolated("'${PORT}'", env), '8080')
    assert.equal(interpolated('|-\n  ${PORT}', env), '8080')
  })

  it('keeps a value made of more than one piece a string', () => {
    assert.equal(interpolated('${PORT}${PORT}', env), '80808080')
    assert.equal(interpolated('http://${HOST}:${PORT}', env), 'http://example.test:8080')
  })

  it('never re-types into a structure or null', () => {
    assert.equal(interpolated('${LIST}', env), '[1, 2]')
    assert.equal(interpolated('${NULLISH:-null}', env), 'null')
  })

  it('writes a literal ${ for $${, even when the variable is set', () => {
    assert.equal(interpolated('$${PORT}', env), '${PORT}')
    assert.equal(interpolated('"a $${B} c ${PORT}"', env), 'a ${B} c 8080')
    assert.equal(interpolated('$$${PORT}', env), '$${PORT}')
  })

  it('leaves a $ without a brace alone', () => {
    assert.equal(interpolated('"$PORT costs $5"', env), '$PORT costs $5')
    assert.equal(interpolated('^/a$', env), '^/a$')
  })

  it('uses the default when the variable is unset or empty; the default may be empty or hold colons', () => {
    assert.equal(interpolated('${MISSING:-fallback}', env), 'fallback')
    assert.equal(interpolated('${EMPTY:-fallback}', env), 'fallback')
    assert.equal(interpolated('"[${MISSING:-}]"', env), '[]')
    assert.equal(interpolated('${MISSING:-http://a:1/b}', env), 'http://a:1/b')
  })

  it('does not interpolate a value twice', () => {
    assert.equal(interpolated('${NESTED}', env), '${PORT}')
  })

  it('reports an unset or empty variable at its line and column, every one', () => {
    assert.deepEqual(problemsOf('a: 1\nb:\n  - x ${NOPE} y\n  - ${EMPTY}\n', env), [
      '3:5 b[0]: environment variable NOPE is not set (write ${NOPE:-default} to give a default)',
      '4:5 b[1]: environment variable EMPTY is empty (write ${EMPTY:-default} to give a default)',
    ])
  })

  it('refuses a ${ it cannot read instead of passing it on literally', () => {
    assert.deepEqual(problemsOf('a: ${1X}\nb: "${FOO.BAR}"\nc: x ${OPEN\n', env), [
      '1:4 a: cannot interpolate "${1X}": write ${NAME} or ${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${',
      '2:4 b: cannot interpolate "${FOO.BAR}": write ${NAME} or ${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${',
      '3:4 c: cannot interpolate "${OPEN": write ${NAME} or ${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${',
    ])
  })

  it('refuses ${VAR} in a key', () => {
    assert.deepEqual(problemsOf('services:\n  ${NAME}: {}\n', env), [
      '2:3 services["${NAME}"]: keys are not interpolated; only values take ${VAR}',
    ])
  })

  it('puts a re-typed value back to its string where the schema wants a string', () => {
    const config = loadConfigText(
      't.yaml',
      [
        'listeners: [{port: 0}]',
        'routes:',
        '  - path: /',
        '    hostRewrite: ${PORT}',
        '    respond:',
        '      headers:',
        '        x-yes: ${YES}',
      ].join('\n'),
      { plugins: builtinPlugins(), env },
    )
    assert.equal(config.routes[0].hostRewrite, '8080')
    assert.deepEqual(config.routes[0].terminal, {
      kind: 'respond',
      status: 200,
      headers: { 'x-yes': 'true' },
      body: '',
    })
  })

  it('says where a wrong value came from', () => {
    assert.throws(
      () =>
        loadConfigText('t.yaml', 'listeners: [{port: "${PORT}"}]\nroutes: []\n', {
          plugins: builtinPlugins(),
          env,
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        assert.deepEqual(
          error.problems.map((p) => p.message),
          ['expected an integer, got "8080" (interpolated from "${PORT}")'],
        )
        return true
      },
    )
  })
})
