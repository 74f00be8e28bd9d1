// Every REST call of the console. Errors carry the server's message, which is shown as is;
// a 401 sends the page to the login form (see onUnauthorized in main.js); a 503 refusal in an
// outage raises the outage banner and says what the banner says (health.js).
import { ElMessage } from 'element-plus'
import 'element-plus/es/components/message/style/css'
import { store } from './store'
import { i18n } from './i18n'
import { isOutageError, noteRefusal, refusedMessage } from './health'

const { t } = i18n.global

const BASE = '/api/v1'

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message)
    this.status = status
    this.code = code
    this.details = details
  }
}

let unauthorized = () => {}

/** Register what happens when a call answers 401 (the app goes to the login page). */
export function onUnauthorized(handler) {
  unauthorized = handler
}

function cookie(name) {
  const found = document.cookie.split('; ').find((c) => c.startsWith(name + '='))
  return found ? decodeURIComponent(found.slice(name.length + 1)) : ''
}

function csrfToken() {
  return store.csrf || cookie('gdos_csrf')
}

/**
 * Whether this browser may hold a session: the session cookie is HttpOnly, but its CSRF
 * companion (same lifetime) is readable. Without it there is no session to ask about.
 */
export const hasSession = () => cookie('gdos_csrf') !== ''

// A session the master no longer knows (ended, user disabled, data restored): drop the
// companion cookie, so that later visits do not ask again.
function forgetSession() {
  document.cookie = 'gdos_csrf=; Max-Age=0; Path=/; SameSite=Strict'
}

function url(path, query) {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') params.append(key, value)
  }
  const qs = params.toString()
  return BASE + path + (qs ? '?' + qs : '')
}

function errorFrom(status, body, statusText) {
  const err = body && typeof body === 'object' ? body.error : null
  if (err && isOutageError(status, err.details)) {
    // The master lost its database or the bus: the banner says so; this call says the same.
    noteRefusal(err.details.lost)
    return new ApiError(
      status,
      err.code,
      refusedMessage(err.details.lost, err.details.changed),
      err.details,
    )
  }
  if (err) return new ApiError(status, err.code, err.message, err.details)
  return new ApiError(status, 'http_error', `${status} ${statusText || ''}`.trim())
}

function fail(error, { quiet, noRedirect }) {
  if (error.status === 401 && !noRedirect) unauthorized()
  else if (!quiet) ElMessage.error({ message: error.message, grouping: true })
  throw error
}

/**
 * One REST call. Options: query, body (JSON), quiet (do not show the error), noRedirect
 * (a 401 is just an error: the login form and the session check use it).
 */
export async function request(method, path, options = {}) {
  const headers = { Accept: 'application/json' }
  const init = { method, headers, credentials: 'same-origin' }
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(options.body)
  }
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken()
  let response
  try {
    response = await fetch(url(path, options.query), init)
  } catch (exc) {
    return fail(new ApiError(0, 'network', t('errors.network', { detail: exc.message })), options)
  }
  if (response.status === 204) return null
  const isJson = (response.headers.get('Content-Type') || '').includes('json')
  const body = isJson ? await response.json().catch(() => null) : await response.text()
  if (!response.ok) return fail(errorFrom(response.status, body, response.statusText), options)
  return body
}

const get = (path, query, options) => request('GET', path, { ...options, query })
const post = (path, body, options) => request('POST', path, { ...options, body })
const patch = (path, body) => request('PATCH', path, { body })
const del = (path, query) => request('DELETE', path, { query })
const enc = encodeURIComponent

// --- auth, users, tokens -------------------------------------------------------------------

export async function login(username, password) {
  const me = await post('/auth/login', { username, password }, { noRedirect: true, quiet: true })
  store.user = me.user
  store.csrf = me.csrf_token || ''
  return me
}

/** Change the session user's own password; the master answers with a fresh session. */
export async function changePassword(current, next) {
  const body = { current_password: current, new_password: next }
  const me = await post('/auth/password', body, { noRedirect: true, quiet: true })
  store.user = me.user
  store.csrf = me.csrf_token || ''
  return me
}

export async function logout() {
  try {
    await post('/auth/logout', undefined, { noRedirect: true, quiet: true })
  } finally {
    store.user = null
    store.csrf = ''
  }
}

/**
 * The session's user, or null when there is no valid session. A browser without a session
 * cookie is not asked about: /auth/me would answer 401, which the browser logs as an error
 * on every first visit.
 */
export async function me() {
  if (!hasSession()) return null
  try {
    const found = await get('/auth/me', undefined, { noRedirect: true, quiet: true })
    store.user = found.user
    store.csrf = found.csrf_token || store.csrf
    return found
  } catch (exc) {
    if (exc.status !== 401) throw exc
    forgetSession()
    return null
  }
}

export const listUsers = () => get('/users')
export const createUser = (body) => post('/users', body)
export const updateUser = (id, body) => patch(`/users/${enc(id)}`, body)
export const deleteUser = (id) => del(`/users/${enc(id)}`)

export const listTokens = () => get('/tokens')
export const createToken = (body) => post('/tokens', body)
export const revokeToken = (id) => del(`/tokens/${enc(id)}`)

// --- nodes -----------------------------------------------------------------------------------

export const listNodes = (query) => get('/nodes', query)
export const getNode = (id) => get(`/nodes/${enc(id)}`)
export const updateNode = (id, body) => patch(`/nodes/${enc(id)}`, body)
export const planNode = (body) => post('/nodes', body)
export const approveNode = (id) => post(`/nodes/${enc(id)}/approve`)
export const adoptionCandidates = (nodeId, spec) => post(`/nodes/${enc(nodeId)}/candidates`, spec)
export const deleteNode = (id, force = false) =>
  del(`/nodes/${enc(id)}`, force ? { force: 'true' } : undefined)

// --- packages --------------------------------------------------------------------------------

export const listPackages = (search) => get('/packages', { search })
export const packageVersions = (name) => get(`/packages/${enc(name)}`)
export const getManifest = (name, version) => get(`/packages/${enc(name)}/${enc(version)}/manifest`)
export const deletePackage = (name, version) => del(`/packages/${enc(name)}/${enc(version)}`)
export const downloadUrl = (name, version) => url(`/packages/${enc(name)}/${enc(version)}/download`)

/**
 * POST a file as the raw request body, reporting progress (0-100) as it goes. XMLHttpRequest,
 * not fetch: only XHR reports upload progress.
 */
function upload(path, query, contentType, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', url(path, query))
    xhr.setRequestHeader('Content-Type', contentType)
    xhr.setRequestHeader('Accept', 'application/json')
    xhr.setRequestHeader('X-CSRF-Token', csrfToken())
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) onProgress((100 * event.loaded) / event.total)
    }
    xhr.onload = () => {
      let body
      try {
        body = JSON.parse(xhr.responseText)
      } catch {
        body = null
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body)
      const error = errorFrom(xhr.status, body, xhr.statusText)
      if (error.status === 401) unauthorized()
      reject(error)
    }
    xhr.onerror = () => reject(new ApiError(0, 'network', t('errors.network', { detail: '' })))
    xhr.send(file)
  })
}

/** Upload a package zip (force: replace an existing version), with progress. */
export const uploadPackage = (file, { force = false, onProgress } = {}) =>
  upload('/packages', force ? { force: 'true' } : undefined, 'application/zip', file, onProgress)

// --- backups (admins) --------------------------------------------------------------------------

export const listBackups = () => get('/backups')
export const createBackup = (includePackages) =>
  post('/backups', { include_packages: !!includePackages })
export const deleteBackup = (name) => del(`/backups/${enc(name)}`)
export const restoreBackup = (name) => post(`/backups/${enc(name)}/restore`)
export const getBackupSchedule = () => get('/backups/schedule')
export const setBackupSchedule = (body) => request('PUT', '/backups/schedule', { body })
export const backupDownloadUrl = (name) => url(`/backups/${enc(name)}/download`)
// Stored objects no record refers to (left behind by a restore), older than minAge seconds.
export const listOrphans = (minAge) => get('/storage/orphans', { min_age: minAge })
export const removeOrphans = (minAge) => del('/storage/orphans', { min_age: minAge })

/** Upload a backup archive (checked by the master, stored, not restored), with progress. */
export const uploadBackup = (file, { onProgress } = {}) =>
  upload('/backups/upload', undefined, 'application/gzip', file, onProgress)

// --- systems, modules, instances -------------------------------------------------------------

export const listSystems = () => get('/systems')
export const getSystem = (id) => get(`/systems/${enc(id)}`)
export const createSystem = (body) => post('/systems', body)
export const updateSystem = (id, body) => patch(`/systems/${enc(id)}`, body)
export const deleteSystem = (id) => del(`/systems/${enc(id)}`)
export const startSystem = (id) => post(`/systems/${enc(id)}/start`)
export const stopSystem = (id) => post(`/systems/${enc(id)}/stop`)
export const startBatch = (id, body) => post(`/systems/${enc(id)}/batches`, body)
export const listBatches = (id) => get(`/systems/${enc(id)}/batches`)

export const listModules = (systemId) => get(`/systems/${enc(systemId)}/modules`)
export const createModule = (systemId, body) => post(`/systems/${enc(systemId)}/modules`, body)
export const updateModule = (id, body) => patch(`/modules/${enc(id)}`, body)
export const deleteModule = (id) => del(`/modules/${enc(id)}`)

export const listInstances = (query) => get('/instances', query)
export const deploy = (body) => post('/instances', body)
export const startInstance = (id) => post(`/instances/${enc(id)}/start`)
export const stopInstance = (id) => post(`/instances/${enc(id)}/stop`)
export const restartInstance = (id) => post(`/instances/${enc(id)}/restart`)
export const destroyInstance = (id) => del(`/instances/${enc(id)}`)

// --- rollouts (a module's version changes only through one) -------------------------------------

export const startRollout = (moduleId, body) => post(`/modules/${enc(moduleId)}/rollouts`, body)
export const rollbackModule = (moduleId, body = {}) =>
  post(`/modules/${enc(moduleId)}/rollback`, body)
export const listRollouts = (query) => get('/rollouts', query)
export const pauseRollout = (id) => post(`/rollouts/${enc(id)}/pause`)
export const resumeRollout = (id) => post(`/rollouts/${enc(id)}/resume`)
export const promoteRollout = (id) => post(`/rollouts/${enc(id)}/promote`)
export const abortRollout = (id, revert) =>
  post(`/rollouts/${enc(id)}/abort`, undefined, {
    query: { revert: revert === undefined ? '' : String(revert) },
  })

// --- audit, settings ----------------------------------------------------------------------------

export const listAudit = (query) => get('/audit', query)
export const getSettings = () => get('/settings')
export const rotateJoinToken = () => post('/settings/join-token')

// --- alerts ----------------------------------------------------------------------------------

export const listAlertRules = () => get('/alerts/rules')
export const createAlertRule = (body) => post('/alerts/rules', body, { quiet: true })
export const replaceAlertRule = (id, body) =>
  request('PUT', `/alerts/rules/${enc(id)}`, { body, quiet: true })
export const deleteAlertRule = (id) => del(`/alerts/rules/${enc(id)}`)
export const activeAlerts = () => get('/alerts/active')
export const alertEvents = (query) => get('/alerts/events', query)
export const listSilences = (expired = false) =>
  get('/alerts/silences', expired ? { expired: 'true' } : undefined)
export const createSilence = (body) => post('/alerts/silences', body)
export const expireSilence = (id) => del(`/alerts/silences/${enc(id)}`)
export const listReceivers = () => get('/alerts/receivers')
export const createReceiver = (body) => post('/alerts/receivers', body)
export const updateReceiver = (id, body) => patch(`/alerts/receivers/${enc(id)}`, body)
export const deleteReceiver = (id) => del(`/alerts/receivers/${enc(id)}`)
export const testReceiver = (id) => post(`/alerts/receivers/${enc(id)}/test`)

// --- fleet commands (admins) and instance logs (operators) ---------------------------------

export const runCommand = (body) => post('/commands', body)
export const listCommands = () => get('/commands')
export const getCommand = (id) => get(`/commands/${enc(id)}`)
export const listLogFiles = (instanceId) => get(`/instances/${enc(instanceId)}/logs`)
/** Tail (no cursor) or follow (cursor {dev, ino, offset}, waiting up to wait seconds). */
export const readLog = (instanceId, file, { lines, cursor, wait } = {}) =>
  get(`/instances/${enc(instanceId)}/logs/read`, {
    file,
    lines,
    cursor: cursor ? `${cursor.dev}:${cursor.ino}:${cursor.offset}` : undefined,
    wait: cursor ? wait : undefined,
  })
export const searchLog = (instanceId, file, q) =>
  get(`/instances/${enc(instanceId)}/logs/search`, { file, q })
export const logDownloadUrl = (instanceId, file) =>
  url(`/instances/${enc(instanceId)}/logs/download`, { file })

// --- web terminal (admins) -------------------------------------------------------------------

export const listTerminalSessions = (query) => get('/terminal/sessions', query)
export const getTerminalSession = (id) => get(`/terminal/sessions/${enc(id)}`)
export const getTerminalRecording = (id) => get(`/terminal/sessions/${enc(id)}/recording`)
export const closeTerminalSession = (id) => del(`/terminal/sessions/${enc(id)}`)
/** The WebSocket URL of a terminal on a node (a new session, or `session` to reattach). */
export function terminalSocketUrl(nodeId, { rows, cols, session } = {}) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}${url(`/terminal/${enc(nodeId)}`, { rows, cols, session })}`
}
