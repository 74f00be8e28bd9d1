// Examples of input syntax, shown as placeholders: code, which reads the same in every
// language (words belong in the locale files).
export const EXAMPLES = {
  pidFile: '/run/nginx.pid',
  processName: 'redis-server',
  nodeSelector: 'role=db, dc=1',
  ruleLabels: 'team=ops, page=yes',
  auditAction: 'instance.',
  auditTarget: 'system:',
  env: 'PORT=8000',
  healthCheck: '{"type": "http", "url": "http://127.0.0.1:${PORT}/healthz"}',
}
