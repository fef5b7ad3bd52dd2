/** The one fixed environment every golden file is loaded with (shared by the tests that read them). */
export const GOLDEN_ENV: Readonly<Record<string, string>> = {
  PORT: '8080',
  USERS_HOST: 'users.internal',
  USERS_PORT: '9001',
  PRESERVE_HOST: 'true',
  BUILD: '42',
  EMPTY: '',
}
